// Bulk tensor reads and writes for safetensors checkpoints. The JS layer parses and validates the
// headers (clear errors for malformed files); this side moves and converts the bytes, off the JS thread.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace diffpo {

enum class DType { F32 = 0, F16 = 1, BF16 = 2 };

struct TensorRead {
  std::string file;
  uint64_t byte_offset;  // absolute, in the file
  uint64_t count;        // elements
  DType dtype;
  size_t dst_offset;     // floats, in the destination block
};

void read_tensors(const std::vector<TensorRead>& reads, float* dst);

struct TensorWrite {
  size_t src_offset, count;  // floats, in the source block
};

// Writes [u64 header length][header][tensor data in order] to path and fsyncs it.
void write_safetensors(const std::string& path, const std::string& header, const std::vector<TensorWrite>& writes,
                       const float* src, DType dtype);

}  // namespace diffpo
