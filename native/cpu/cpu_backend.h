// The fast CPU backend: GEMM-based linear and attention, threaded and vectorised elementwise ops.
#pragma once
#include <memory>
#include <vector>

#include "../common/threadpool.h"
#include "../ops.h"

namespace diffpo {

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(int threads);
  const char* name() const override { return "cpu"; }
  int threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }

  void embedding_forward(float* out, const int32_t* ids, const float* wte, int N, int D, float scale) override;
  void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int N, int D, float scale) override;
  void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int N, int D, float eps) override;
  void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                        const float* rstd, int N, int D) override;
  void linear_forward(float* out, const float* inp, const float* w, int N, int I, int O, bool accumulate) override;
  void linear_forward_bf16(float* out, const float* inp, const uint16_t* w, int N, int I, int O,
                           bool accumulate) override;
  void embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* wte, int N, int D, float scale) override;
  void linear_backward(float* dinp, bool accumulate_dinp, float* dw, const float* dout, const float* inp,
                       const float* w, int N, int I, int O) override;
  void linear_backward_bf16(float* dinp, bool accumulate_dinp, const float* dout, const uint16_t* w, int N, int I,
                            int O) override;
  void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd,
                    long ld) override;
  void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd,
                     long ld) override;
  void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                         const uint8_t* keymask, const AttnShape& s) override;
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* /*out*/, const float* att, const float* q,
                          const float* k, const float* v, const AttnShape& s) override;
  void swiglu_forward(float* out, const float* ab, int N, int F) override;
  void swiglu_backward(float* dab, const float* dout, const float* ab, int N, int F) override;
  void lmhead_logprob_forward(float* logp, float* lse, const float* h, const float* w, const int32_t* rows,
                              const int32_t* targets, int S, int D, int E, float scale) override;
  void lmhead_logprob_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h,
                               const float* w, const int32_t* rows, const int32_t* targets, int S, int D, int E,
                               float scale) override;
  void lmhead_logprob_forward_bf16(float* logp, float* lse, const float* h, const uint16_t* w, const int32_t* rows,
                                   const int32_t* targets, int S, int D, int E, float scale) override;
  void lmhead_logprob_backward_bf16(float* dh, const float* dlogp, const float* lse, const float* h, const uint16_t* w,
                                    const int32_t* rows, const int32_t* targets, int S, int D, int E, float scale) override;
  void dropout(float* y, const float* x, int N, int C, float p, uint64_t seed, uint32_t stream, uint32_t step,
               bool accumulate) override;
  void scale(float* x, long n, float s) override;
  double sum_squares(const float* x, long n) override;
  void adamw_update(float* p, const float* g, float* m, float* v, long n, const AdamWStep& s) override;

 private:
  // Splits [0, n) into about 4 chunks per thread and runs fn(lo, hi) on each.
  template <typename F>
  void parallel_range(long n, long min_chunk, F&& fn);
  // The LM head's weight (E,D): float32, or BF16 bits widened while the GEMMs pack it.
  struct HeadWeight {
    const float* f32;
    const uint16_t* bf16;
  };
  void lmhead_chunk(float* logits, float* hb, const float* h, HeadWeight w, const int32_t* rows, int n, int D, int E);
  void lmhead_forward(float* logp, float* lse, const float* h, HeadWeight w, const int32_t* rows, const int32_t* targets, int S,
                      int D, int E, float scale);
  void lmhead_backward(float* dh, float* dw, const float* dlogp, const float* lse, const float* h, HeadWeight w,
                       const int32_t* rows, const int32_t* targets, int S, int D, int E, float scale);
  void rope(float* x, const float* cos, const float* sin, const int32_t* pos, int B, int T, int nh, int hd, long ld,
            float sign);
  float* scratch(size_t floats);  // grows once, reused by the LM head and attention backward

  ThreadPool pool_;
  std::vector<float> scratch_;
};

}  // namespace diffpo
