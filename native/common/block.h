// A 64-byte-aligned float allocation. Parameters and gradients live in shared Blocks so that JS views
// (zero-copy Float32Arrays) keep the memory alive even after the model is disposed.
#pragma once
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include <sys/mman.h>

namespace diffpo {

// Where a backend keeps its tensors: host memory for the CPU, memory that both the host and the device
// can address (CUDA managed memory) for a GPU, so the same Blocks back JS views and kernels alike.
struct Memory {
  virtual ~Memory() = default;
  virtual void* allocate(size_t bytes) = 0;  // 64-byte aligned, zeroed; throws std::bad_alloc
  virtual void release(void* p, size_t bytes) = 0;
};

// Large blocks are mapped from the OS and unmapped on release: malloc keeps freed blocks below its
// mmap threshold (which glibc raises after each large free) in the heap, so models created and
// disposed in a loop grew RSS by about a parameter block each (200 MB to 2 GB over 500 cycles).
// Fresh pages come zeroed, and only the pages touched count against RSS.
struct HostMemory : Memory {
  static constexpr size_t kMapAtLeast = 1 << 16;
  void* allocate(size_t bytes) override {
    bytes = ((bytes + 63) / 64) * 64;
    if (bytes >= kMapAtLeast) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
      return p;  // page-aligned
    }
    void* p = std::aligned_alloc(64, bytes ? bytes : 64);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    return p;
  }
  void release(void* p, size_t bytes) override {
    bytes = ((bytes + 63) / 64) * 64;
    if (bytes >= kMapAtLeast)
      munmap(p, bytes);
    else
      std::free(p);
  }
};

inline Memory& host_memory() {
  static HostMemory m;
  return m;
}

struct Block {
  float* data = nullptr;
  size_t size = 0;  // floats
  Memory& memory;   // outlives the Block (a static of the backend's translation unit)
  explicit Block(size_t n, Memory& mem = host_memory()) : size(n), memory(mem) {
    data = static_cast<float*>(mem.allocate(n * sizeof(float)));
  }
  ~Block() { memory.release(data, size * sizeof(float)); }
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
  explicit Arena(Memory& mem = host_memory()) : memory_(mem) {}
  void commit() {
    if (!block_ || block_->size < used_) {
      block_.reset();  // free the old one first: on a GPU the peak matters
      block_ = std::make_shared<Block>(used_ + used_ / 4, memory_);
    }
  }
  float* at(size_t off) { return block_->data + off; }
  size_t capacity() const { return block_ ? block_->size : 0; }

 private:
  Memory& memory_;
  BlockPtr block_;
  size_t used_ = 0;
};

}  // namespace diffpo
