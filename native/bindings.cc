// Node-API bindings. Heavy calls run on libuv's pool as AsyncWorkers and return Promises; the typed
// arrays they read or fill are referenced (not copied) until the work completes.
#include <napi.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>

#include "common/errors.h"
#include "cpu/cpu_backend.h"
#include "cpu/gemm.h"
#include "cpu/reference.h"
#include "model.h"
#include "sampler.h"
#include "tensor_io.h"
#include "testing.h"
#ifdef DIFFPO_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace diffpo {
namespace {

class Job : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  Job(Napi::Env env, Work work, Done done, std::function<void()> finally)
      : Napi::AsyncWorker(env), work_(std::move(work)), done_(std::move(done)), finally_(std::move(finally)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  void keep(Napi::Value v) {
    if (v.IsObject() || v.IsExternal()) refs_.push_back(Napi::Persistent(v));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      work_();
    } catch (const Error& e) {
      code_ = e.code;
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "ERR_OUT_OF_MEMORY";
      SetError("out of memory");
    } catch (const std::exception& e) {
      code_ = "ERR_NATIVE";
      SetError(e.what());
    }
  }
  void OnOK() override {
    if (finally_) finally_();
    deferred_.Resolve(done_ ? done_(Env()) : Env().Undefined());
  }
  void OnError(const Napi::Error& e) override {
    if (finally_) finally_();
    Napi::Error err = Napi::Error::New(Env(), e.Message());
    err.Set("code", Napi::String::New(Env(), code_));
    deferred_.Reject(err.Value());
  }

 private:
  Work work_;
  Done done_;
  std::function<void()> finally_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::string code_ = "ERR_NATIVE";
};

[[noreturn]] void throw_js(Napi::Env env, const std::string& code, const std::string& msg) {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw_js(env, e.code, e.what());
  } catch (const std::bad_alloc&) {
    throw_js(env, "ERR_OUT_OF_MEMORY", "out of memory");
  }
}

// Typed-array accessors with length checks (the JS layer validates first; these stop a bad call from
// reading past a buffer).
template <typename T, napi_typedarray_type kind>
T* typed(const Napi::Value& v, size_t min_len, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kind)
    throw_js(v.Env(), "ERR_INVALID_ARGUMENT", std::string(what) + " has the wrong array type");
  auto arr = v.As<Napi::TypedArrayOf<T>>();
  if (arr.ElementLength() < min_len)
    throw_js(v.Env(), "ERR_INVALID_ARGUMENT", std::string(what) + " is shorter than expected");
  return arr.Data();
}

int get_int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }
double get_num(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }
bool get_bool(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

ModelConfig parse_config(const Napi::Object& o) {
  ModelConfig c;
  c.d_model = get_int(o, "d_model");
  c.n_heads = get_int(o, "n_heads");
  c.n_kv_heads = get_int(o, "n_kv_heads");
  c.n_layers = get_int(o, "n_layers");
  c.mlp_hidden_size = get_int(o, "mlp_hidden_size");
  c.vocab_size = get_int(o, "vocab_size");
  c.embedding_size = get_int(o, "embedding_size");
  c.mask_token_id = get_int(o, "mask_token_id");
  c.rope_theta = get_num(o, "rope_theta");
  c.rms_norm_eps = get_num(o, "rms_norm_eps");
  c.weight_tying = get_bool(o, "weight_tying");
  c.scale_logits = get_bool(o, "scale_logits");
  c.input_emb_norm = get_bool(o, "input_emb_norm");
  return c;
}

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

// Views over a Block that keep it alive (the model may be disposed while JS still holds them).
Napi::ArrayBuffer block_buffer(Napi::Env env, const BlockPtr& block) {
  auto* keep = new BlockPtr(block);
  return Napi::ArrayBuffer::New(env, block->data, block->size * sizeof(float),
                                [](Napi::Env, void*, BlockPtr* hint) { delete hint; }, keep);
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("tensors", &NativeModel::Tensors),
                        InstanceMethod("paramBuffer", &NativeModel::ParamBuffer),
                        InstanceMethod("gradBuffer", &NativeModel::GradBuffer),
                        InstanceMethod("optimizerBuffers", &NativeModel::OptimizerBuffers),
                        InstanceMethod("initRandom", &NativeModel::InitRandom),
                        InstanceMethod("zeroGrad", &NativeModel::ZeroGrad),
                        InstanceMethod("logits", &NativeModel::Logits),
                        InstanceMethod("hidden", &NativeModel::Hidden),
                        InstanceMethod("logprobLoss", &NativeModel::LogprobLoss),
                        InstanceMethod("adamwStep", &NativeModel::AdamwStep),
                        InstanceMethod("loadTensors", &NativeModel::LoadTensors),
                        InstanceMethod("decoderCreate", &NativeModel::DecoderCreate),
                        InstanceMethod("decoderStep", &NativeModel::DecoderStep),
                        InstanceMethod("decoderTrace", &NativeModel::DecoderTrace),
                        InstanceMethod("decoderResult", &NativeModel::DecoderResult),
                        InstanceMethod("decoderFree", &NativeModel::DecoderFree),
                        InstanceMethod("saveSafetensors", &NativeModel::SaveSafetensors),
                        InstanceMethod("cancel", &NativeModel::Cancel),
                        InstanceMethod("dispose", &NativeModel::Dispose)});
  }

  NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    Napi::Env env = info.Env();
    const ModelConfig cfg = parse_config(info[0].As<Napi::Object>());
    const int threads = info[1].As<Napi::Number>().Int32Value();
    const std::string backend = info[2].As<Napi::String>().Utf8Value();
    guarded(env, [&] {
      std::unique_ptr<Backend> be;
      if (backend == "reference")
        be.reset(new ReferenceBackend());
#ifdef DIFFPO_CUDA
      else if (backend == "cuda" || backend == "cuda-fp32")
        be = make_cuda_backend(0, backend == "cuda");
#endif
      else
        be.reset(new CpuBackend(threads));
      model_.reset(new Model(cfg, std::move(be)));
      return 0;
    });
  }

 private:
  Model& live(Napi::Env env) {
    if (!model_) throw_js(env, "ERR_DISPOSED", "the model was disposed");
    if (busy_) throw_js(env, "ERR_BUSY", "the model is running another operation");
    return *model_;
  }
  // Starts a job holding the model; the model is freed after it if dispose() came in meanwhile.
  Napi::Value start(Napi::Env env, Job::Work work, Job::Done done, std::vector<Napi::Value> keep) {
    busy_ = true;
    model_->cancel = false;
    auto* job = new Job(env, std::move(work), std::move(done), [this] {
      busy_ = false;
      if (dispose_pending_) {
        model_.reset();
        decoders_.clear();
      }
      Unref();
    });
    for (auto& v : keep) job->keep(v);
    job->keep(Value());
    Ref();
    job->Queue();
    return job->promise();
  }

  Napi::Value Tensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) throw_js(env, "ERR_DISPOSED", "the model was disposed");
    const auto& ts = model_->tensors();
    Napi::Array arr = Napi::Array::New(env, ts.size());
    for (size_t i = 0; i < ts.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", ts[i].name);
      Napi::Array shape = Napi::Array::New(env, ts[i].shape.size());
      for (size_t j = 0; j < ts[i].shape.size(); j++) shape.Set((uint32_t)j, (double)ts[i].shape[j]);
      o.Set("shape", shape);
      o.Set("offset", (double)ts[i].offset);
      o.Set("numel", (double)ts[i].numel);
      arr.Set((uint32_t)i, o);
    }
    return arr;
  }
  Napi::Value ParamBuffer(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return block_buffer(info.Env(), model_->params());
  }
  Napi::Value GradBuffer(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return guarded(info.Env(), [&] { return block_buffer(info.Env(), model_->grads()); });
  }
  // [m, v]: AdamW's moments (zero until the first step), for training checkpoints
  Napi::Value OptimizerBuffers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    return guarded(env, [&] {
      Napi::Array arr = Napi::Array::New(env, 2);
      arr.Set(0u, block_buffer(env, m.adam_m()));
      arr.Set(1u, block_buffer(env, m.adam_v()));
      return arr;
    });
  }
  Napi::Value InitRandom(const Napi::CallbackInfo& info) {
    Model& m = live(info.Env());
    m.init_random((uint64_t)info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::Number>().FloatValue());
    return info.Env().Undefined();
  }
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    live(info.Env()).zero_grad();
    return info.Env().Undefined();
  }
  // The (ids, keymask|null, positions|null, B, T) prefix shared by the forward calls, checked for length.
  struct Batch {
    int32_t* ids;
    uint8_t* mask;
    int32_t* pos;
    int B, T;
  };
  static Batch batch_args(const Napi::CallbackInfo& info) {
    Batch b;
    b.B = info[3].As<Napi::Number>().Int32Value();
    b.T = info[4].As<Napi::Number>().Int32Value();
    const size_t N = (size_t)b.B * b.T;
    b.ids = typed<int32_t, napi_int32_array>(info[0], N, "tokens");
    b.mask = info[1].IsNull() ? nullptr : typed<uint8_t, napi_uint8_array>(info[1], N, "attentionMask");
    b.pos = info[2].IsNull() ? nullptr : typed<int32_t, napi_int32_array>(info[2], N, "positions");
    return b;
  }
  // logits(ids, keymask|null, positions|null, B, T, out)
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const Batch a = batch_args(info);
    float* out = typed<float, napi_float32_array>(info[5], (size_t)a.B * a.T * m.config().embedding_size, "logits output");
    return start(env, [&m, a, out] { m.logits(a.ids, a.mask, a.pos, a.B, a.T, out); }, nullptr,
                 {info[0], info[1], info[2], info[5]});
  }
  // hidden(ids, keymask|null, positions|null, B, T, out (B*T*D))
  Napi::Value Hidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const Batch a = batch_args(info);
    float* out = typed<float, napi_float32_array>(info[5], (size_t)a.B * a.T * m.config().d_model, "hidden output");
    return start(env, [&m, a, out] { m.hidden(a.ids, a.mask, a.pos, a.B, a.T, out); }, nullptr, {info[0], info[1], info[2], info[5]});
  }
  // logprobLoss(ids, keymask|null, positions|null, B, T, rows, targets, weights, logpOut|null, backward) -> loss
  Napi::Value LogprobLoss(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const Batch a = batch_args(info);
    const int S = (int)info[5].As<Napi::Int32Array>().ElementLength();
    int32_t* rows = typed<int32_t, napi_int32_array>(info[5], S, "rows");
    int32_t* targets = typed<int32_t, napi_int32_array>(info[6], S, "targets");
    float* weights = typed<float, napi_float32_array>(info[7], S, "weights");
    float* logp = info[8].IsNull() ? nullptr : typed<float, napi_float32_array>(info[8], S, "logp output");
    const bool backward = info[9].ToBoolean().Value();
    auto loss = std::make_shared<double>(0.0);
    return start(
        env,
        [&m, a, rows, targets, weights, S, logp, backward, loss] {
          *loss = m.logprob_loss(a.ids, a.mask, a.pos, a.B, a.T, rows, targets, weights, S, logp, backward);
        },
        [loss](Napi::Env e) { return Napi::Number::New(e, *loss); },
        {info[0], info[1], info[2], info[5], info[6], info[7], info[8]});
  }
  // decoderCreate(prompts: Int32Array[], {genLength, blockLength, temperature, seed, strategy: 0..3, steps,
  //   randomRemasking, threshold: Float32Array, factor, maxNfe: Int32Array, compact}) -> decoder handle
  Napi::Value DecoderCreate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<std::vector<int32_t>> prompts;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      const size_t n = v.As<Napi::Int32Array>().ElementLength();
      const int32_t* p = typed<int32_t, napi_int32_array>(v, n, "prompt");
      prompts.emplace_back(p, p + n);
    }
    Napi::Object o = info[1].As<Napi::Object>();
    SamplerOptions s;
    s.gen_length = get_int(o, "genLength");
    s.block_length = get_int(o, "blockLength");
    s.temperature = get_num(o, "temperature");
    s.seed = (uint64_t)get_num(o, "seed");
    s.strategy = (Strategy)get_int(o, "strategy");
    s.steps = get_int(o, "steps");
    s.random_remasking = get_bool(o, "randomRemasking");
    s.factor = (float)get_num(o, "factor");
    s.compact = get_bool(o, "compact");
    s.cache = (CacheMode)get_int(o, "cache");
    const size_t B = prompts.size();
    const float* th = typed<float, napi_float32_array>(o.Get("threshold"), B, "threshold");
    const int32_t* budget = typed<int32_t, napi_int32_array>(o.Get("maxNfe"), B, "maxNfe");
    s.threshold.assign(th, th + B);
    s.max_nfe.assign(budget, budget + B);
    return guarded(env, [&] {
      const int id = next_decoder_++;
      decoders_[id].reset(new Decoder(m.config(), prompts, std::move(s)));
      return Napi::Number::New(env, id);
    });
  }
  Decoder* decoder_arg(const Napi::Value& v) {
    auto it = decoders_.find(v.As<Napi::Number>().Int32Value());
    if (it == decoders_.end()) throw_js(v.Env(), "ERR_INVALID_ARGUMENT", "unknown or freed decoder");
    return it->second.get();
  }
  // decoderFree(decoder): frees its canvas and trajectory now rather than at garbage collection
  Napi::Value DecoderFree(const Napi::CallbackInfo& info) {
    if (!busy_) decoders_.erase(info[0].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  }
  // decoderStep(decoder) -> Promise<boolean> (true when every sequence is done)
  Napi::Value DecoderStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Decoder* d = decoder_arg(info[0]);
    auto finished = std::make_shared<bool>(false);
    return start(
        env, [&m, d, finished] { *finished = d->step(m); },
        [finished](Napi::Env e) { return Napi::Boolean::New(e, *finished); }, {});
  }
  template <typename T, typename Arr>
  static Napi::Value copy_out(Napi::Env env, const std::vector<T>& v) {
    Arr a = Arr::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  }
  // decoderTrace(decoder) -> what the last step unmasked: {sequence, position, token, confidence}
  Napi::Value DecoderTrace(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const StepTrace& t = decoder_arg(info[0])->last_step();
    Napi::Object o = Napi::Object::New(env);
    o.Set("sequence", copy_out<int32_t, Napi::Int32Array>(env, t.sequence));
    o.Set("position", copy_out<int32_t, Napi::Int32Array>(env, t.position));
    o.Set("token", copy_out<int32_t, Napi::Int32Array>(env, t.token));
    o.Set("confidence", copy_out<float, Napi::Float32Array>(env, t.confidence));
    return o;
  }
  // decoderResult(decoder) -> {tokens, nfe, decodeStep, behaviourLogProb, hitBudget}
  Napi::Value DecoderResult(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Decoder* d = decoder_arg(info[0]);
    Napi::Object o = Napi::Object::New(env);
    o.Set("tokens", copy_out<int32_t, Napi::Int32Array>(env, d->tokens()));
    o.Set("nfe", copy_out<int32_t, Napi::Int32Array>(env, d->nfe()));
    o.Set("decodeStep", copy_out<int32_t, Napi::Int32Array>(env, d->decode_step()));
    o.Set("behaviourLogProb", copy_out<float, Napi::Float32Array>(env, d->behaviour_logprob()));
    o.Set("hitBudget", copy_out<uint8_t, Napi::Uint8Array>(env, d->hit_budget()));
    return o;
  }
  // adamwStep({lr, beta1, beta2, eps, weightDecay, gradScale, t, maxGradNorm}) -> grad norm
  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Object o = info[0].As<Napi::Object>();
    AdamWStep s{(float)get_num(o, "lr"),     (float)get_num(o, "beta1"),       (float)get_num(o, "beta2"),
                (float)get_num(o, "eps"),    (float)get_num(o, "weightDecay"), (float)get_num(o, "gradScale"),
                get_int(o, "t")};
    const float max_norm = (float)get_num(o, "maxGradNorm");
    auto norm = std::make_shared<double>(0.0);
    return start(env, [&m, s, max_norm, norm] { *norm = m.adamw_step(s, max_norm); },
                 [norm](Napi::Env e) { return Napi::Number::New(e, *norm); }, {});
  }
  // loadTensors([{file, byteOffset, count, dtype: 0|1|2, dstOffset}])
  Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<TensorRead> reads;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      TensorRead r{o.Get("file").As<Napi::String>().Utf8Value(), (uint64_t)get_num(o, "byteOffset"),
                   (uint64_t)get_num(o, "count"), (DType)get_int(o, "dtype"), (size_t)get_num(o, "dstOffset")};
      bool known = false;
      for (const auto& t : m.tensors()) known |= t.offset == r.dst_offset && t.numel == r.count;
      if (!known) throw_js(env, "ERR_INVALID_ARGUMENT", "tensor read does not match a parameter tensor");
      reads.push_back(std::move(r));
    }
    float* dst = m.params()->data;
    return start(env, [reads, dst] { read_tensors(reads, dst); }, nullptr, {});
  }
  // saveSafetensors(path, header, [{srcOffset, count}], dtype)
  Napi::Value SaveSafetensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const std::string header = info[1].As<Napi::String>().Utf8Value();
    Napi::Array arr = info[2].As<Napi::Array>();
    std::vector<TensorWrite> writes;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      TensorWrite w{(size_t)get_num(o, "srcOffset"), (size_t)get_num(o, "count")};
      if (w.src_offset + w.count > m.params()->size) throw_js(env, "ERR_INVALID_ARGUMENT", "tensor write out of range");
      writes.push_back(w);
    }
    const DType dtype = (DType)info[3].As<Napi::Number>().Int32Value();
    const float* src = m.params()->data;
    return start(env, [path, header, writes, src, dtype] { write_safetensors(path, header, writes, src, dtype); },
                 nullptr, {});
  }
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    if (model_) model_->cancel = true;
    return info.Env().Undefined();
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (busy_) {
      dispose_pending_ = true;
      model_->cancel = true;
    } else {
      model_.reset();
      decoders_.clear();
    }
    return info.Env().Undefined();
  }

  std::unique_ptr<Model> model_;
  bool busy_ = false, dispose_pending_ = false;
  std::map<int, std::unique_ptr<Decoder>> decoders_;
  int next_decoder_ = 1;
};

Napi::Value OpCheckNames(const Napi::CallbackInfo& info) {
  auto names = op_check_names();
  Napi::Array arr = Napi::Array::New(info.Env(), names.size());
  for (size_t i = 0; i < names.size(); i++) arr.Set((uint32_t)i, names[i]);
  return arr;
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

// {flavour, devices, name, reason}: what this build can run on (the loader's backend 'auto' reads it)
Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
#ifdef DIFFPO_CUDA
  const CudaInfo c = cuda_info();
  o.Set("flavour", "cuda");
  o.Set("devices", c.devices);
  o.Set("name", c.name);
  o.Set("reason", c.reason);
#else
  o.Set("flavour", "cpu");
  o.Set("devices", 0);
  o.Set("reason", "the CPU flavour has no CUDA backend");
#endif
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
  exports.Set("NativeModel", NativeModel::Init(env));
  exports.Set("opCheckNames", Napi::Function::New(env, OpCheckNames));
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
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME diffpo_cuda
#endif
NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
