// A 64-byte-aligned float allocation. Parameters and gradients live in shared Blocks so that JS views
// (zero-copy Float32Arrays) keep the memory alive even after the model is disposed.
#pragma once
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace diffpo {

struct Block {
  float* data = nullptr;
  size_t size = 0;  // floats
  explicit Block(size_t n) : size(n) {
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    data = static_cast<float*>(std::aligned_alloc(64, bytes ? bytes : 64));
    if (!data) throw std::bad_alloc();
    std::memset(data, 0, n * sizeof(float));
  }
  ~Block() { std::free(data); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
};

using BlockPtr = std::shared_ptr<Block>;

// Bump allocator over a growable Block: activations are planned per call and the Block only grows.
class Arena {
 public:
  void begin() { used_ = 0; }
  // Reserve n floats (64-byte aligned); valid after commit().
  size_t reserve(size_t n) {
    const size_t off = used_;
    used_ += (n + 15) / 16 * 16;
    return off;
  }
  void commit() {
    if (!block_ || block_->size < used_) block_ = std::make_shared<Block>(used_ + used_ / 4);
  }
  float* at(size_t off) { return block_->data + off; }
  size_t capacity() const { return block_ ? block_->size : 0; }

 private:
  BlockPtr block_;
  size_t used_ = 0;
};

}  // namespace diffpo
