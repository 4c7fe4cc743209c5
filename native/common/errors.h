// Native errors carry a stable code that the JS layer maps onto its DiffpoError subclasses.
#pragma once
#include <stdexcept>
#include <string>

namespace diffpo {

struct Error : std::runtime_error {
  std::string code;
  std::string key;  // ERR_CONFIG: the config.json key at fault
  Error(std::string c, const std::string& msg, std::string k = "") : std::runtime_error(msg), code(std::move(c)), key(std::move(k)) {}
};

inline void require(bool ok, const char* code, const std::string& msg) {
  if (!ok) throw Error(code, msg);
}

// A config check: ERR_CONFIG naming the key.
inline void require_config(bool ok, const char* key, const std::string& msg) {
  if (!ok) throw Error("ERR_CONFIG", std::string("config.") + key + " " + msg, key);
}

}  // namespace diffpo
