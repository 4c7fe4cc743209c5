// Native errors carry a stable code that the JS layer maps onto its DiffpoError subclasses.
#pragma once
#include <stdexcept>
#include <string>

namespace diffpo {

struct Error : std::runtime_error {
  std::string code;
  Error(std::string c, const std::string& msg) : std::runtime_error(msg), code(std::move(c)) {}
};

inline void require(bool ok, const char* code, const std::string& msg) {
  if (!ok) throw Error(code, msg);
}

}  // namespace diffpo
