// The test addon (diffpo_testing.node, built beside the product addon and never shipped): the
// self-checks of native/testing.cc (every op against its reference loop and central finite
// differences, the whole model against a float64 reference) and the GEMM and FMA-peak benchmarks.
#include <napi.h>

#include <chrono>

#include "common/threadpool.h"
#include "cpu/gemm.h"
#include "napi_util.h"
#include "testing.h"

namespace diffpo {
namespace {

Napi::Object check_to_js(Napi::Env env, const CheckResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("forward", r.forward_error);
  Napi::Object b = Napi::Object::New(env), rb = Napi::Object::New(env);
  for (auto& kv : r.backward_error) b.Set(kv.first, kv.second);
  for (auto& kv : r.reference_backward_error) rb.Set(kv.first, kv.second);
  o.Set("backward", b);
  o.Set("referenceBackward", rb);
  return o;
}

Napi::Value OpCheckNames(const Napi::CallbackInfo& info) {
  auto names = op_check_names();
  Napi::Array arr = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) arr.Set((uint32_t)i, names[i]);
  return arr;
}

Napi::Value OpCaseCovers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    auto covers = op_case_covers(info[0].As<Napi::String>().Utf8Value());
    Napi::Array arr = Napi::Array::New(env, covers.size());
    for (size_t i = 0; i < covers.size(); i++) arr.Set((uint32_t)i, covers[i]);
    return arr;
  });
}

Napi::Value OpCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    return check_to_js(env, op_check(info[0].As<Napi::String>().Utf8Value(), (uint64_t)info[1].As<Napi::Number>().Int64Value()));
  });
}

Napi::Value ModelCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    return check_to_js(env, model_check(parse_config(info[0].As<Napi::Object>()), (uint64_t)info[1].As<Napi::Number>().Int64Value()));
  });
}

// referenceLogProbs(config, params: Float64Array, ids, keymask|null, positions|null, B, T, rows, targets) -> Float64Array
Napi::Value ReferenceLogProbs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&] {
    const ModelConfig cfg = parse_config(info[0].As<Napi::Object>());
    const int B = info[5].As<Napi::Number>().Int32Value(), T = info[6].As<Napi::Number>().Int32Value();
    const size_t N = (size_t)B * T;
    auto params = info[1].As<Napi::Float64Array>();
    const int32_t* ids = typed<int32_t, napi_int32_array>(info[2], N, "tokens");
    const uint8_t* mask = info[3].IsNull() ? nullptr : typed<uint8_t, napi_uint8_array>(info[3], N, "attentionMask");
    const int32_t* pos = info[4].IsNull() ? nullptr : typed<int32_t, napi_int32_array>(info[4], N, "positions");
    auto rows = info[7].As<Napi::Int32Array>(), targets = info[8].As<Napi::Int32Array>();
    const std::vector<int32_t> r(rows.Data(), rows.Data() + rows.ElementLength()), t(targets.Data(), targets.Data() + targets.ElementLength());
    const std::vector<double> logp = reference_logprobs(cfg, params.Data(), ids, mask, pos, B, T, r, t);
    Napi::Float64Array out = Napi::Float64Array::New(env, logp.size());
    std::copy(logp.begin(), logp.end(), out.Data());
    return out;
  });
}

// gemmBench(M, N, K, threads, reps, kernel: 'auto'|'portable', layout: 'nt'|'nn'|'tn') -> best GFLOP/s.
// nt: out = inp W^T (linear forward), nn: dinp = dout W, tn: dW = dout^T inp.
Napi::Value GemmBench(const Napi::CallbackInfo& info) {
  const int M = info[0].As<Napi::Number>().Int32Value(), N = info[1].As<Napi::Number>().Int32Value(),
            K = info[2].As<Napi::Number>().Int32Value(), threads = info[3].As<Napi::Number>().Int32Value(),
            reps = info[4].As<Napi::Number>().Int32Value();
  const bool portable = info[5].As<Napi::String>().Utf8Value() == "portable";
  const std::string layout = info.Length() > 6 ? info[6].As<Napi::String>().Utf8Value() : "nt";
  std::vector<float> A((size_t)M * K, 0.5f), B((size_t)N * K, 0.25f), C((size_t)M * N);
  const MatView a = layout == "tn" ? MatView{A.data(), 1, M} : MatView{A.data(), K, 1};
  const MatView b = layout == "nt" ? MatView{B.data(), 1, K} : MatView{B.data(), N, 1};
  ThreadPool pool(threads);
  double best = 0;
  for (int r = 0; r < reps; r++) {
    auto t0 = std::chrono::steady_clock::now();
    if (portable)
      sgemm_portable(M, N, K, a, b, C.data(), N, false);
    else
      sgemm(M, N, K, a, b, C.data(), N, false, &pool);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * M * N * K / s / 1e9);
  }
  return Napi::Number::New(info.Env(), best);
}

Napi::Value FmaPeak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), measure_fma_peak_gflops(info[0].As<Napi::Number>().Int32Value(),
                                                               info[1].As<Napi::Number>().DoubleValue()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("opCheckNames", Napi::Function::New(env, OpCheckNames));
  exports.Set("opCaseCovers", Napi::Function::New(env, OpCaseCovers));
  exports.Set("opCheck", Napi::Function::New(env, OpCheck));
  exports.Set("modelCheck", Napi::Function::New(env, ModelCheck));
  exports.Set("gemmBench", Napi::Function::New(env, GemmBench));
  exports.Set("referenceLogProbs", Napi::Function::New(env, ReferenceLogProbs));
  exports.Set("fmaPeak", Napi::Function::New(env, FmaPeak));
  exports.Set("gemmKernel", Napi::String::New(env, gemm_kernel_name()));
  return exports;
}

}  // namespace
}  // namespace diffpo

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return diffpo::Init(env, exports); }
NODE_API_MODULE(diffpo_testing, InitModule)
