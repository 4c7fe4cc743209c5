// Node-API helpers shared by the product addon (bindings.cc) and the test addon (testing_bindings.cc):
// errors with a stable code, checked typed-array access, config parsing.
#pragma once
#include <napi.h>

#include <string>

#include "common/errors.h"
#include "model.h"

namespace diffpo {

// A JS Error with a stable `code` (and, for ERR_CONFIG, the config `key` at fault).
[[noreturn]] inline void throw_js(Napi::Env env, const std::string& code, const std::string& msg, const std::string& key = "") {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  if (!key.empty()) err.Set("key", Napi::String::New(env, key));
  throw err;
}

template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw_js(env, e.code, e.what(), e.key);
  } catch (const std::bad_alloc&) {
    throw_js(env, "ERR_OUT_OF_MEMORY", "out of memory");
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {  // nothing else may cross into node: it would terminate the process
    throw_js(env, "ERR_NATIVE", e.what());
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

inline int get_int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int32Value(); }
inline double get_num(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }
inline bool get_bool(const Napi::Object& o, const char* key) { return o.Get(key).ToBoolean().Value(); }

inline ModelConfig parse_config(const Napi::Object& o) {
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

}  // namespace diffpo
