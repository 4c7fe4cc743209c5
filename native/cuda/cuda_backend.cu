// CudaBackend: each op of ops.h as launches of this folder's kernels. Ops are synchronous (they return
// when their results are visible to the host), as the model's host code reads small results (losses,
// norms) between ops; the launches within an op are asynchronous.
#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../common/errors.h"
#include "kernels.h"

namespace diffpo {

namespace cuda {
void check_last(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error("ERR_CUDA", std::string(what) + ": " + cudaGetErrorString(e));
}
}  // namespace cuda

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear a sticky-free error so the next call starts clean
    throw Error("ERR_CUDA", std::string(what) + ": " + cudaGetErrorString(e));
  }
}

// Managed memory: addressable from the host (JS views, the model's host code) and the device, allocated
// on the model's device (allocations come from any worker thread, whose current device is not the
// model's unless set here).
constexpr int kMaxDevices = 64;
struct ManagedMemory : Memory {
  int device = 0;
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    check(cudaSetDevice(device), "cudaSetDevice");
    if (cudaMallocManaged(&p, bytes ? bytes : 64) != cudaSuccess) {
      cudaGetLastError();
      throw std::bad_alloc();
    }
    check(cudaMemset(p, 0, bytes), "cudaMemset");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return p;
  }
  void release(void* p, size_t) override { cudaFree(p); }
};

// One per device, static: a Block (a JS view's) may outlive its model and backend.
ManagedMemory& managed_memory(int device) {
  static ManagedMemory m[kMaxDevices];
  m[device].device = device;
  return m[device];
}

bool on_device(const void* p) {
  if (!p) return true;
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

class CudaBackend : public Backend {
 public:
  CudaBackend(int device, bool bf16) : device_(device), bf16_(bf16) {
    const char* env = std::getenv("DIFFPO_CUDA_GEMM");
    if (env && std::strcmp(env, "fp32") == 0) bf16_ = false;
    check(cudaSetDevice(device_), "cudaSetDevice");
  }
  ~CudaBackend() override {
    for (auto& b : staging_) cudaFree(b.p);
  }
  const char* name() const override { return bf16_ ? "cuda" : "cuda-fp32"; }
  Memory& memory() override { return managed_memory(device_); }

  void copy(float* dst, const float* src, long n) override {
    begin();
    check(cudaMemcpy(dst, src, sizeof(float) * n, cudaMemcpyDefault), "copy");
    finish();
  }
  void zero(float* x, long n) override {
    begin();
    if (on_device(x))
      check(cudaMemset(x, 0, sizeof(float) * n), "zero");
    else
      std::memset(x, 0, sizeof(float) * n);
    finish();
  }
  void copy_rows(float* dst, long dst_ld, const int32_t* dst_rows, const float* src, long src_ld,
                 const int32_t* src_rows, int rows, int n, bool accumulate) override {
    if (!on_device(dst) && !on_device(src))
      return Backend::copy_rows(dst, dst_ld, dst_rows, src, src_ld, src_rows, rows, n, accumulate);
    begin();
    cuda::copy_rows(dst, dst_ld, in(dst_rows, rows, 0), src, src_ld, in(src_rows, rows, 1), rows, n, accumulate);
    finish();
  }

  void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) override {
    begin();
    cuda::embedding_forward(out, in(ids, N, 0), wte, N, D, scale);
    finish();
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) override {
    begin();
    cuda::embedding_backward(dwte, dout, in(ids, N, 0), N, D, scale);
    finish();
  }
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D, float eps) override {
    begin();
    cuda::rmsnorm_forward(out, rstd, inp, w, N, D, eps);
    finish();
  }
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, const float* rstd,
                        int N, int D) override {
    begin();
    cuda::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, D);
    finish();
  }
  void linear_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate) override {
    begin();
    // out (N,O) = inp (N,I) w^T; out may be a caller's host array (full logits)
    cuda::gemm({N, O, I, inp, I, 1, w, 1, I, inout(out, (size_t)N * O, 6, accumulate), O, accumulate}, bf16_);
    finish();
  }
  void linear_backward(float* dinp, bool accumulate_dinp, float* dw, const float* dout, const float* inp, const float* w,
                       int N, int I, int O) override {
    begin();
    if (dinp) cuda::gemm({N, I, O, dout, O, 1, w, I, 1, dinp, I, accumulate_dinp}, bf16_);  // dout (N,O) w (O,I)
    if (dw) cuda::gemm({O, I, N, dout, 1, O, inp, I, 1, dw, I, true}, bf16_);              // dout^T inp
    finish();
  }
  void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd,
                    long ld) override {
    rope(x, cos, sin, pos, B, T, nh, hd, ld, 1.f);
  }
  void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd,
                     long ld) override {
    rope(dx, cos, sin, pos, B, T, nh, hd, ld, -1.f);
  }
  void attention_forward(float* out, float* att, const float* q, const float* k, const float* v, const uint8_t* keymask,
                         const AttnShape& s) override {
    begin();
    const uint8_t* mask = in(keymask, (size_t)s.B * s.keys(), 0);
    const int32_t* kv_rows = in(s.kv_rows, s.B, 1);
    cuda::attention_forward(out, att, q, k, v, mask, s.B, s.T, s.keys(), s.H, s.KV, s.hd, s.ldq, s.ldkv, kv_rows);
    finish();
  }
  size_t attention_state_floats(int B, int H, int T, int Tk) const override {
    return cuda::attention_state_floats(B, H, T, Tk);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* att,
                          const float* q, const float* k, const float* v, const AttnShape& s) override {
    begin();
    float* delta = scratch<float>((size_t)s.B * s.H * s.T, 2);
    cuda::attention_backward(dq, dk, dv, dout, out, att, q, k, v, delta, s.B, s.T, s.H, s.KV, s.hd, s.ldq, s.ldkv);
    finish();
  }
  void swiglu_forward(float* out, const float* ab, int N, int F) override {
    begin();
    cuda::swiglu_forward(out, ab, N, F);
    finish();
  }
  void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) override {
    begin();
    cuda::swiglu_backward(dab, dout, ab, N, F);
    finish();
  }

  // LM head in chunks of rows: gather h[rows], one GEMM for the logits, then a block per row.
  void lmhead_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* rows,
                              const int32_t* targets, int S, int D, int E, float scale) override {
    begin();
    const int32_t *r = in(rows, S, 0), *t = in(targets, S, 1);
    float* lp = out(logp, S, 2);
    float* ls = out(lse, S, 3);
    const int cs = chunk_rows(S, E);
    float* hb = scratch<float>((size_t)cs * (D + E), 4);
    float* logits = hb + (size_t)cs * D;
    for (int s0 = 0; s0 < S; s0 += cs) {
      const int n = std::min(cs, S - s0);
      chunk_logits(logits, hb, h, w, r + s0, n, D, E);
      cuda::logsumexp_gather(logits, ls + s0, lp + s0, t + s0, n, E, scale);
    }
    finish();
  }
  void lmhead_logprob_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h,
                               const float* w, const int32_t* rows, const int32_t* targets, int S, int D, int E,
                               float scale) override {
    begin();
    const int32_t *r = in(rows, S, 0), *t = in(targets, S, 1);
    const float *g = in(dlogp, S, 2), *ls = in(lse, S, 3);
    const int cs = chunk_rows(S, E);
    float* hb = scratch<float>((size_t)cs * (2 * D + E), 4);
    float* dhb = hb + (size_t)cs * D;
    float* logits = dhb + (size_t)cs * D;
    for (int s0 = 0; s0 < S; s0 += cs) {
      const int n = std::min(cs, S - s0);
      chunk_logits(logits, hb, h, w, r + s0, n, D, E);
      cuda::logsoftmax_gather_backward(logits, g + s0, ls + s0, t + s0, n, E, scale);
      cuda::gemm({n, D, E, logits, E, 1, w, D, 1, dhb, D, false}, bf16_);  // dlogits (n,E) w (E,D)
      if (dw) cuda::gemm({E, D, n, logits, 1, E, hb, D, 1, dw, D, true}, bf16_);  // dlogits^T hb
      cuda::copy_rows(dh, D, r + s0, dhb, D, nullptr, n, D, true);         // rows may repeat: atomic adds
    }
    finish();
  }

  void dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step,
               bool accumulate) override {
    begin();
    const size_t n = (size_t)N * C;
    cuda::dropout(inout(y, n, 6, accumulate), in(x, n, 0), N, C, p, seed, stream, step, accumulate);
    finish();
  }
  void scale(float* x, long n, float s) override {
    begin();
    cuda::scale(inout(x, n, 7, true), n, s);
    finish();
  }
  double sum_squares(const float* x, long n) override {
    begin();
    double* d = scratch<double>(1, 5);
    cuda::sum_squares(d, x, n);
    double result = 0;
    check(cudaMemcpy(&result, d, sizeof(double), cudaMemcpyDeviceToHost), "sum_squares");
    finish();
    return result;
  }
  void adamw_update(float* p, const float* g, float* m, float* v, long n, const AdamWStep& s) override {
    begin();
    const float bc1 = (float)(1.0 - std::pow((double)s.beta1, s.t)), bc2 = (float)(1.0 - std::pow((double)s.beta2, s.t));
    cuda::adamw(p, g, m, v, n, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.grad_scale, bc1, bc2);
    finish();
  }
  void decode_score(int32_t* x0, float* conf, float* logp, float* entropy, const float* logits, const NoiseRow* noise,
                    uint64_t seed, int S, int E, int V, int mask_id, double temperature) override {
    begin();
    // S row keys cross to the device, not S x V noise
    const NoiseRow* nz = temperature > 0 ? in(noise, (size_t)S, 0) : nullptr;
    cuda::decode_score(out(x0, S, 1), out(conf, S, 2), out(logp, S, 3), out(entropy, S, 4), in(logits, (size_t)S * E, 5),
                       nz, seed, S, E, V, mask_id, temperature);
    finish();
  }

 private:
  struct Buffer {
    void* p = nullptr;
    size_t bytes = 0;
  };
  struct CopyBack {
    void* host;
    const void* dev;
    size_t bytes;
  };

  void begin() {
    check(cudaSetDevice(device_), "cudaSetDevice");  // ops may come from any worker thread
    copy_back_.clear();
  }
  // Waits for the op's kernels, reports their errors, and copies staged outputs to their host arrays.
  void finish() {
    check(cudaDeviceSynchronize(), name());
    for (const auto& c : copy_back_) check(cudaMemcpy(c.host, c.dev, c.bytes, cudaMemcpyDeviceToHost), "copy back");
    copy_back_.clear();
  }
  template <typename T>
  T* scratch(size_t n, int slot) {
    if ((int)staging_.size() <= slot) staging_.resize(slot + 1);
    Buffer& b = staging_[slot];
    if (b.bytes < n * sizeof(T)) {
      cudaFree(b.p);
      b = Buffer();
      check(cudaMalloc(&b.p, std::max<size_t>(n * sizeof(T), 256)), "cudaMalloc (staging)");
      b.bytes = std::max<size_t>(n * sizeof(T), 256);
    }
    return static_cast<T*>(b.p);
  }
  // A device-readable copy of host data (or the pointer itself when the device can address it).
  template <typename T>
  const T* in(const T* p, size_t n, int slot) {
    if (on_device(p)) return p;
    T* d = scratch<T>(n, slot);
    check(cudaMemcpy(d, p, n * sizeof(T), cudaMemcpyHostToDevice), "staging");
    return d;
  }
  // Where a kernel writes an output destined for host memory (read first when `read`); copied back
  // by finish().
  template <typename T>
  T* inout(T* p, size_t n, int slot, bool read) {
    if (on_device(p)) return p;
    T* d = scratch<T>(n, slot + 8);
    if (read) check(cudaMemcpy(d, p, n * sizeof(T), cudaMemcpyHostToDevice), "staging");
    copy_back_.push_back({p, d, n * sizeof(T)});
    return d;
  }
  template <typename T>
  T* out(T* p, size_t n, int slot) {
    return inout(p, n, slot, false);
  }
  void rope(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd, long ld,
            float sign) {
    begin();
    int P = T;  // rows of the tables the op reads
    if (pos && !on_device(pos))
      for (long i = 0; i < (long)B * T; i++) P = std::max(P, pos[i] + 1);
    const size_t table = (size_t)P * (hd / 2);
    cuda::rope(x, in(cos, table, 0), in(sin, table, 1), in(pos, (size_t)B * T, 2), B, T, nh, hd, ld, sign);
    finish();
  }
  // logits (n,E) = h[rows] (gathered into hb (n,D)) w^T, unscaled
  void chunk_logits(float* logits, float* hb, const float* h, const float* w, const int32_t* rows, int n, int D, int E) {
    cuda::copy_rows(hb, D, nullptr, h, D, rows, n, D, false);
    cuda::gemm({n, E, D, hb, D, 1, w, 1, D, logits, E, false}, bf16_);
  }
  // rows of the LM head per chunk: the logits of a chunk stay under 64M floats
  static int chunk_rows(int S, int E) { return std::max(1, std::min(S, (64 << 20) / std::max(1, E))); }

  int device_;
  bool bf16_;
  std::vector<Buffer> staging_;
  std::vector<CopyBack> copy_back_;
};

}  // namespace

CudaInfo cuda_info() {
  CudaInfo info;
  const cudaError_t e = cudaGetDeviceCount(&info.devices);
  if (e != cudaSuccess) {
    cudaGetLastError();
    info.devices = 0;
    info.reason = cudaGetErrorString(e);
    return info;
  }
  if (info.devices == 0) {
    info.reason = "no CUDA device";
    return info;
  }
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) info.name = prop.name;
  return info;
}

std::unique_ptr<Backend> make_cuda_backend(int device, bool bf16_gemm) {
  const CudaInfo info = cuda_info();
  require(info.devices > 0, "ERR_NO_CUDA", "no usable CUDA device: " + info.reason);
  require(device >= 0 && device < info.devices, "ERR_INVALID_ARGUMENT",
          "CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(info.devices) + " found)");
  require(device < kMaxDevices, "ERR_INVALID_ARGUMENT", "CUDA device " + std::to_string(device) + " is past the 64 this build addresses");
  return std::unique_ptr<Backend>(new CudaBackend(device, bf16_gemm));
}

}  // namespace diffpo
