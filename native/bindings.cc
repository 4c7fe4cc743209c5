// Node-API bindings. Heavy calls run on libuv's pool as AsyncWorkers and return Promises; the typed
// arrays they read or fill are referenced (not copied) until the work completes.
#include <napi.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <utility>

#include "collective/mpi_world.h"
#include "common/errors.h"
#include "napi_util.h"
#include "cpu/cpu_backend.h"
#include "cpu/reference.h"
#include "model.h"
#include "sampler.h"
#include "tensor_io.h"
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
      key_ = e.key;
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
    if (!key_.empty()) err.Set("key", Napi::String::New(Env(), key_));
    deferred_.Reject(err.Value());
  }

 private:
  Work work_;
  Done done_;
  std::function<void()> finally_;
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::string code_ = "ERR_NATIVE";
  std::string key_;
};

// Node refuses external buffers over buffer.constants.MAX_LENGTH (4 GiB in Node 20) and, when it
// does, frees what node-addon-api frees again: a double free that killed the process on a 1.25B-
// parameter model. Larger blocks are exposed tensor by tensor (no LLaDA-8B tensor comes near it).
constexpr size_t kMaxExternalBytes = (size_t)1 << 32;

// What a JS view of native memory holds: the Block, until the view is collected or its model is
// disposed (dispose() detaches the views and drops the Block at once, so a loop of models does not
// keep every one alive until the garbage collector runs).
struct ViewHold {
  BlockPtr block;
};

// A view of bytes [offset, offset + bytes) of a Block, and its hold.
std::pair<Napi::ArrayBuffer, std::shared_ptr<ViewHold>> block_view(Napi::Env env, const BlockPtr& block, size_t offset,
                                                                   size_t bytes, const char* what) {
  if (bytes > kMaxExternalBytes)
    throw_js(env, "ERR_INVALID_ARGUMENT", std::string(what) + " is " + std::to_string(bytes) +
                                              " bytes, more than the 4 GiB a Node.js buffer can view");
  auto hold = std::make_shared<ViewHold>(ViewHold{block});
  auto* keep = new std::shared_ptr<ViewHold>(hold);
  auto ab = Napi::ArrayBuffer::New(env, reinterpret_cast<char*>(block->data) + offset, bytes,
                                   [](Napi::Env, void*, std::shared_ptr<ViewHold>* hint) { delete hint; }, keep);
  return {ab, hold};
}

Napi::Array tensor_specs(Napi::Env env, const std::vector<TensorSpec>& ts) {
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

// tensorLayout(config) -> the tensors a model of this config would have, allocating nothing
Napi::Value TensorLayout(const Napi::CallbackInfo& info) {
  const ModelConfig cfg = parse_config(info[0].As<Napi::Object>());
  return guarded(info.Env(), [&] { return tensor_specs(info.Env(), Model::layout(cfg)); });
}

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {InstanceMethod("tensors", &NativeModel::Tensors),
                        InstanceMethod("paramBuffer", &NativeModel::ParamBuffer),
                        InstanceMethod("weightsDtype", &NativeModel::WeightsDtype),
                        InstanceMethod("setCheckpointing", &NativeModel::SetCheckpointing),
                        InstanceMethod("arenaBytes", &NativeModel::ArenaBytes),
                        InstanceMethod("gradBuffer", &NativeModel::GradBuffer),
                        InstanceMethod("addLora", &NativeModel::AddLora),
                        InstanceMethod("loraTensors", &NativeModel::LoraTensors),
                        InstanceMethod("loraBuffer", &NativeModel::LoraBuffer),
                        InstanceMethod("setAdapters", &NativeModel::SetAdapters),
                        InstanceMethod("seedDropout", &NativeModel::SeedDropout),
                        InstanceMethod("mergeLora", &NativeModel::MergeLora),
                        InstanceMethod("newMoments", &NativeModel::NewMoments),
                        InstanceMethod("initRandom", &NativeModel::InitRandom),
                        InstanceMethod("zeroGrad", &NativeModel::ZeroGrad),
                        InstanceMethod("logits", &NativeModel::Logits),
                        InstanceMethod("hidden", &NativeModel::Hidden),
                        InstanceMethod("logprobLoss", &NativeModel::LogprobLoss),
                        InstanceMethod("adamwStep", &NativeModel::AdamwStep),
                        InstanceMethod("loadTensors", &NativeModel::LoadTensors),
                        InstanceMethod("decoderCreate", &NativeModel::DecoderCreate),
                        InstanceMethod("decoderStep", &NativeModel::DecoderStep),
                        InstanceMethod("decoderFeatures", &NativeModel::DecoderFeatures),
                        InstanceMethod("decoderSetThresholds", &NativeModel::DecoderSetThresholds),
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
    const DType weights = info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "bf16" ? DType::BF16 : DType::F32;
    guarded(env, [&] {
      std::unique_ptr<Backend> be;
      if (backend == "reference")
        be.reset(new ReferenceBackend());
#ifdef DIFFPO_CUDA
      else if (backend == "cuda" || backend == "cuda-fp32")
        be = make_cuda_backend(info[4].IsNumber() ? info[4].As<Napi::Number>().Int32Value() : 0, backend == "cuda");
#endif
      else
        be.reset(new CpuBackend(threads));
      model_.reset(new Model(cfg, std::move(be), weights));
      return 0;
    });
  }

 private:
  Model& live(Napi::Env env) {
    if (!model_) throw_js(env, "ERR_DISPOSED", "the model was disposed");
    if (busy_) throw_js(env, "ERR_BUSY", "the model is running another operation");
    return *model_;
  }
  // A view registered with this model, detached by dispose().
  Napi::ArrayBuffer view(Napi::Env env, const BlockPtr& block, size_t offset, size_t bytes, const char* what) {
    views_.erase(std::remove_if(views_.begin(), views_.end(), [](const View& v) { return v.hold.expired(); }), views_.end());
    auto [ab, hold] = block_view(env, block, offset, bytes, what);
    views_.push_back({Napi::Weak(ab), hold});
    return ab;
  }
  Napi::ArrayBuffer view(Napi::Env env, const BlockPtr& block, const char* what) {
    return view(env, block, 0, block->size * sizeof(float), what);
  }
  // Frees the model and its memory now: every view still reachable is detached (length 0) first.
  void release() {
    for (auto& v : views_) {
      auto hold = v.hold.lock();
      if (!hold) continue;
      Napi::ArrayBuffer ab = v.ref.Value();
      if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
      hold->block.reset();
    }
    views_.clear();
    model_.reset();
    decoders_.clear();
  }
  // Starts a job holding the model; the model is freed after it if dispose() came in meanwhile.
  Napi::Value start(Napi::Env env, Job::Work work, Job::Done done, std::vector<Napi::Value> keep) {
    busy_ = true;
    model_->cancel = false;
    auto* job = new Job(env, std::move(work), std::move(done), [this] {
      busy_ = false;
      if (dispose_pending_) release();
      Unref();
    });
    for (auto& v : keep) job->keep(v);
    job->keep(Value());
    Ref();
    job->Queue();
    return job->promise();
  }

  Napi::Value Tensors(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return tensor_specs(info.Env(), model_->tensors());
  }
  // The bytes of tensor info[0] of ts (elements of eb bytes) in block, or the whole block.
  Napi::ArrayBuffer tensor_or_block(const Napi::CallbackInfo& info, const BlockPtr& block, const std::vector<TensorSpec>& ts,
                                    size_t eb, const char* what) {
    if (info.Length() == 0 || info[0].IsUndefined()) return view(info.Env(), block, what);
    const uint32_t i = info[0].As<Napi::Number>().Uint32Value();
    if (i >= ts.size()) throw_js(info.Env(), "ERR_INVALID_ARGUMENT", "tensor index out of range");
    return view(info.Env(), block, ts[i].offset * eb, ts[i].numel * eb, ts[i].name.c_str());
  }
  // paramBuffer(index?): the base parameters; gradBuffer(index?): the gradients of what trains (the
  // parameters, or the LoRA adapters); loraBuffer(index?): the adapters. One tensor, or the whole block
  // (at most 4 GiB).
  Napi::Value ParamBuffer(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return tensor_or_block(info, model_->params(), model_->tensors(), model_->element_bytes(), "the parameter block");
  }
  Napi::Value GradBuffer(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return guarded(info.Env(), [&] { return tensor_or_block(info, model_->grads(), model_->trainable_tensors(), sizeof(float), "the gradient block"); });
  }
  Napi::Value LoraBuffer(const Napi::CallbackInfo& info) {
    LoraAdapters* lora = live(info.Env()).lora();
    if (!lora) throw_js(info.Env(), "ERR_INVALID_ARGUMENT", "this model has no LoRA adapters");
    return tensor_or_block(info, lora->params(), lora->tensors(), sizeof(float), "the adapter block");
  }
  // seedDropout(seed): LoRA dropout's masks from here on (see Model::seed_dropout)
  Napi::Value SeedDropout(const Napi::CallbackInfo& info) {
    live(info.Env()).seed_dropout((uint64_t)info[0].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }
  // addLora({rank, alpha, dropout, targets: bit mask over q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out}, seed)
  Napi::Value AddLora(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Object o = info[0].As<Napi::Object>();
    LoraSpec spec{get_int(o, "rank"), get_num(o, "alpha"), (uint32_t)get_int(o, "targets"), get_num(o, "dropout")};
    const uint64_t seed = (uint64_t)info[1].As<Napi::Number>().DoubleValue();
    guarded(env, [&] { m.add_lora(spec, seed); });
    return env.Undefined();
  }
  Napi::Value LoraTensors(const Napi::CallbackInfo& info) {
    LoraAdapters* lora = live(info.Env()).lora();
    return tensor_specs(info.Env(), lora ? lora->tensors() : std::vector<TensorSpec>{});
  }
  // setAdapters(on: boolean): whether forwards apply the LoRA adapters (off: the base model)
  Napi::Value SetAdapters(const Napi::CallbackInfo& info) {
    live(info.Env()).use_adapters = info[0].ToBoolean().Value();
    return info.Env().Undefined();
  }
  Napi::Value MergeLora(const Napi::CallbackInfo& info) {
    Model& m = live(info.Env());
    return start(info.Env(), [&m] { m.merge_lora(); }, nullptr, {});
  }
  // setCheckpointing(on: boolean): recompute each layer in the backward instead of keeping its activations
  Napi::Value SetCheckpointing(const Napi::CallbackInfo& info) {
    live(info.Env()).checkpointing = info[0].ToBoolean().Value();
    return info.Env().Undefined();
  }
  Napi::Value ArenaBytes(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return Napi::Number::New(info.Env(), (double)model_->arena_floats() * sizeof(float));
  }
  Napi::Value WeightsDtype(const Napi::CallbackInfo& info) {
    if (!model_) throw_js(info.Env(), "ERR_DISPOSED", "the model was disposed");
    return Napi::String::New(info.Env(), model_->weights_dtype() == DType::BF16 ? "bf16" : "f32");
  }
  // newMoments() -> [m, v]: zeroed AdamW moments for one optimizer, in the backend's memory
  Napi::Value NewMoments(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    for (auto it = moments_.begin(); it != moments_.end();) it = it->second.expired() ? moments_.erase(it) : std::next(it);
    return guarded(env, [&] {
      Napi::Array arr = Napi::Array::New(env, 2);
      for (uint32_t i = 0; i < 2; i++) {
        BlockPtr block = m.new_moment();
        moments_[block->data] = block;
        arr.Set(i, view(env, block, "an AdamW moment block"));
      }
      return arr;
    });
  }
  // The moment Block behind an ArrayBuffer from newMoments() (any other buffer is refused: on a GPU
  // the update must run on the backend's own memory).
  Block& moment_arg(const Napi::Value& v) {
    if (!v.IsArrayBuffer()) throw_js(v.Env(), "ERR_INVALID_ARGUMENT", "AdamW moments must be ArrayBuffers from newMoments()");
    auto it = moments_.find(v.As<Napi::ArrayBuffer>().Data());
    BlockPtr block = it == moments_.end() ? nullptr : it->second.lock();
    if (!block) throw_js(v.Env(), "ERR_INVALID_ARGUMENT", "AdamW moments must come from this model's newMoments()");
    return *block;
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
  // {tokens, attentionMask|null, positions|null, batch, seqLen}: the inputs of every forward, checked for length.
  struct Batch {
    int32_t* ids;
    uint8_t* mask;
    int32_t* pos;
    int B, T;
  };
  static Batch batch_arg(const Napi::Object& o) {
    Batch b;
    b.B = get_int(o, "batch");
    b.T = get_int(o, "seqLen");
    const size_t N = (size_t)b.B * b.T;
    b.ids = typed<int32_t, napi_int32_array>(o.Get("tokens"), N, "tokens");
    b.mask = o.Get("attentionMask").IsNull() ? nullptr : typed<uint8_t, napi_uint8_array>(o.Get("attentionMask"), N, "attentionMask");
    b.pos = o.Get("positions").IsNull() ? nullptr : typed<int32_t, napi_int32_array>(o.Get("positions"), N, "positions");
    return b;
  }
  // logits(batch, out (B*T*E))
  Napi::Value Logits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const Batch a = batch_arg(info[0].As<Napi::Object>());
    float* out = typed<float, napi_float32_array>(info[1], (size_t)a.B * a.T * m.config().embedding_size, "logits output");
    return start(env, [&m, a, out] { m.logits(a.ids, a.mask, a.pos, a.B, a.T, out); }, nullptr, {info[0], info[1]});
  }
  // hidden(batch, out (B*T*D))
  Napi::Value Hidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    const Batch a = batch_arg(info[0].As<Napi::Object>());
    float* out = typed<float, napi_float32_array>(info[1], (size_t)a.B * a.T * m.config().d_model, "hidden output");
    return start(env, [&m, a, out] { m.hidden(a.ids, a.mask, a.pos, a.B, a.T, out); }, nullptr, {info[0], info[1]});
  }
  // logprobLoss({...batch, rows, targets, weights, logProbs|null, backward}) -> loss
  Napi::Value LogprobLoss(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Object o = info[0].As<Napi::Object>();
    const Batch a = batch_arg(o);
    const Napi::Value rows_v = o.Get("rows");
    if (!rows_v.IsTypedArray()) throw_js(env, "ERR_INVALID_ARGUMENT", "rows must be an Int32Array");
    const int S = (int)rows_v.As<Napi::TypedArray>().ElementLength();
    int32_t* rows = typed<int32_t, napi_int32_array>(rows_v, S, "rows");
    int32_t* targets = typed<int32_t, napi_int32_array>(o.Get("targets"), S, "targets");
    float* weights = typed<float, napi_float32_array>(o.Get("weights"), S, "weights");
    float* logp = o.Get("logProbs").IsNull() ? nullptr : typed<float, napi_float32_array>(o.Get("logProbs"), S, "logProbs");
    const bool backward = get_bool(o, "backward");
    auto loss = std::make_shared<double>(0.0);
    return start(
        env,
        [&m, a, rows, targets, weights, S, logp, backward, loss] {
          *loss = m.logprob_loss(a.ids, a.mask, a.pos, a.B, a.T, rows, targets, weights, S, logp, backward);
        },
        [loss](Napi::Env e) { return Napi::Number::New(e, *loss); }, {info[0]});
  }
  // decoderCreate(prompts: Int32Array[], {genLength, blockLength, temperature, seed, strategy: 'steps' |
  //   'threshold' | 'factor' | 'entropy', steps, randomRemasking, threshold: Float32Array, factor,
  //   maxNfe: Int32Array, compact, cache: 'none' | 'prefix' | 'dual'}) -> decoder handle
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
    s.first_sequence = (uint64_t)get_num(o, "firstSequence");
    s.strategy = strategy_arg(env, o.Get("strategy"));
    s.steps = get_int(o, "steps");
    s.random_remasking = get_bool(o, "randomRemasking");
    s.factor = (float)get_num(o, "factor");
    s.compact = get_bool(o, "compact");
    s.cache = cache_arg(env, o.Get("cache"));
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
  static Strategy strategy_arg(Napi::Env env, const Napi::Value& v) {
    const std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (name == "steps") return Strategy::Steps;
    if (name == "threshold") return Strategy::Threshold;
    if (name == "factor") return Strategy::Factor;
    if (name == "entropy") return Strategy::Entropy;
    throw_js(env, "ERR_INVALID_ARGUMENT", "strategy must be 'steps', 'threshold', 'factor' or 'entropy', got '" + name + "'");
  }
  static CacheMode cache_arg(Napi::Env env, const Napi::Value& v) {
    const std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (name == "none") return CacheMode::None;
    if (name == "prefix") return CacheMode::Prefix;
    if (name == "dual") return CacheMode::Dual;
    throw_js(env, "ERR_INVALID_ARGUMENT", "cache must be 'none', 'prefix' or 'dual', got '" + name + "'");
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
  // decoderFeatures(decoder) -> Promise<Float32Array> (B x 8): the first forward and the learned
  // sampler's features from it (Decoder::first_forward_features); the first step selects from it
  Napi::Value DecoderFeatures(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Decoder* d = decoder_arg(info[0]);
    auto features = std::make_shared<std::vector<float>>();
    return start(
        env, [&m, d, features] { *features = d->first_forward_features(m); },
        [features](Napi::Env e) { return copy_out<float, Napi::Float32Array>(e, *features); }, {});
  }
  // decoderSetThresholds(decoder, Float32Array): one threshold per sequence, for the steps to come
  Napi::Value DecoderSetThresholds(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Decoder* d = decoder_arg(info[0]);
    const size_t n = info[1].IsTypedArray() ? info[1].As<Napi::TypedArray>().ElementLength() : 0;
    const float* th = typed<float, napi_float32_array>(info[1], n, "threshold");
    return guarded(env, [&] {
      d->set_thresholds(std::vector<float>(th, th + n));
      return env.Undefined();
    });
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
  // adamwStep({lr, beta1, beta2, eps, weightDecay, gradScale, t, maxGradNorm}, m, v) -> grad norm
  Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Object o = info[0].As<Napi::Object>();
    Block& mom1 = moment_arg(info[1]);
    Block& mom2 = moment_arg(info[2]);
    if (&mom1 == &mom2) throw_js(env, "ERR_INVALID_ARGUMENT", "AdamW's two moments must be different buffers");
    AdamWStep s{(float)get_num(o, "lr"),     (float)get_num(o, "beta1"),       (float)get_num(o, "beta2"),
                (float)get_num(o, "eps"),    (float)get_num(o, "weightDecay"), (float)get_num(o, "gradScale"),
                get_int(o, "t")};
    const float max_norm = (float)get_num(o, "maxGradNorm");
    auto norm = std::make_shared<double>(0.0);
    return start(env, [&m, s, max_norm, norm, &mom1, &mom2] { *norm = m.adamw_step(s, max_norm, mom1, mom2); },
                 [norm](Napi::Env e) { return Napi::Number::New(e, *norm); }, {info[1], info[2]});
  }
  // loadTensors([{file, byteOffset, count, dtype: 0|1|2, dstOffset}])
  Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Model& m = live(env);
    Napi::Array arr = info[0].As<Napi::Array>();
    std::vector<TensorRead> reads;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Object o = arr.Get(i).As<Napi::Object>();
      TensorRead r{"", o.Get("file").As<Napi::String>().Utf8Value(), (uint64_t)get_num(o, "byteOffset"),
                   (uint64_t)get_num(o, "count"), (DType)get_int(o, "dtype"), (size_t)get_num(o, "dstOffset")};
      for (const auto& t : m.tensors())
        if (t.offset == r.dst_offset && t.numel == r.count) r.name = t.name;
      if (r.name.empty()) throw_js(env, "ERR_INVALID_ARGUMENT", "tensor read does not match a parameter tensor");
      reads.push_back(std::move(r));
    }
    void* dst = m.params()->data;
    const DType dd = m.weights_dtype();
    return start(env, [reads, dst, dd, &m] {
      read_tensors(reads, dst, dd);
      m.params_changed();
    }, nullptr, {});
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
      const auto& last = m.tensors().back();
      if (w.src_offset + w.count > last.offset + last.numel) throw_js(env, "ERR_INVALID_ARGUMENT", "tensor write out of range");
      writes.push_back(w);
    }
    const DType dtype = (DType)info[3].As<Napi::Number>().Int32Value();
    const void* src = m.params()->data;
    const DType sd = m.weights_dtype();
    return start(env, [path, header, writes, src, sd, dtype] { write_safetensors(path, header, writes, src, sd, dtype); },
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
      release();
    }
    return info.Env().Undefined();
  }

  std::unique_ptr<Model> model_;
  bool busy_ = false, dispose_pending_ = false;
  std::map<int, std::unique_ptr<Decoder>> decoders_;
  int next_decoder_ = 1;
  std::map<void*, std::weak_ptr<Block>> moments_;  // what newMoments() handed out
  struct View {
    Napi::Reference<Napi::ArrayBuffer> ref;  // weak
    std::weak_ptr<ViewHold> hold;
  };
  std::vector<View> views_;  // every view handed out and not yet collected
};

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

// The collective layer (lib/engine/collective.ts): MPI loaded on first use, never at addon load.
Napi::Value MpiInit(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const MpiWorld w = mpi_init();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("rank", w.rank);
    o.Set("size", w.size);
    o.Set("library", w.library);
    o.Set("version", w.version);
    return o;
  });
}

Napi::Value mpi_job(Napi::Env env, Job::Work work, Napi::Value keep) {
  auto* job = new Job(env, std::move(work), nullptr, nullptr);
  job->keep(keep);
  job->Queue();
  return job->promise();
}

// mpiAllReduceSum(Float32Array | Float64Array, bucketElements) -> Promise, summed in place
Napi::Value MpiAllReduceSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw_js(env, "ERR_INVALID_ARGUMENT", "allReduceSum needs a Float32Array or Float64Array");
  auto arr = info[0].As<Napi::TypedArray>();
  const bool f64 = arr.TypedArrayType() == napi_float64_array;
  if (!f64 && arr.TypedArrayType() != napi_float32_array) throw_js(env, "ERR_INVALID_ARGUMENT", "allReduceSum needs a Float32Array or Float64Array");
  char* data = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  const size_t count = arr.ElementLength();
  const size_t bucket = (size_t)info[1].As<Napi::Number>().Int64Value();
  return mpi_job(env, [=] { mpi_all_reduce_sum(data, count, f64, bucket); }, info[0]);
}

// mpiBroadcast(typedArray, root) -> Promise: root's bytes into every rank's array
Napi::Value MpiBroadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw_js(env, "ERR_INVALID_ARGUMENT", "broadcast needs a typed array");
  auto arr = info[0].As<Napi::TypedArray>();
  char* data = static_cast<char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  const size_t bytes = arr.ByteLength();
  const int root = info[1].As<Napi::Number>().Int32Value();
  return mpi_job(env, [=] { mpi_broadcast(data, bytes, root); }, info[0]);
}

Napi::Value MpiBarrier(const Napi::CallbackInfo& info) { return mpi_job(info.Env(), [] { mpi_barrier(); }, info.Env().Undefined()); }

Napi::Value MpiAbort(const Napi::CallbackInfo& info) { mpi_abort(info[0].As<Napi::Number>().Int32Value()); }

Napi::Value MpiFinalize(const Napi::CallbackInfo& info) {
  mpi_finalize();
  return info.Env().Undefined();
}

// The addon's functions (native/index.d.cts types them), besides the NativeModel class.
using Binding = Napi::Value (*)(const Napi::CallbackInfo&);
const std::pair<const char*, Binding> kFunctions[] = {
    {"backendInfo", BackendInfo}, {"tensorLayout", TensorLayout}, {"mpiInit", MpiInit},
    {"mpiAllReduceSum", MpiAllReduceSum}, {"mpiBroadcast", MpiBroadcast}, {"mpiBarrier", MpiBarrier},
    {"mpiAbort", MpiAbort}, {"mpiFinalize", MpiFinalize},
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const auto& [name, fn] : kFunctions) exports.Set(name, Napi::Function::New(env, fn, name));
  exports.Set("NativeModel", NativeModel::Init(env));
  return exports;
}

}  // namespace
}  // namespace diffpo

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return diffpo::Init(env, exports); }
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME diffpo_cuda
#endif
NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitModule)
