// Bulk tensor reads and writes for safetensors checkpoints. The JS layer parses and validates the
// headers (clear errors for malformed files); this side moves and converts the bytes, off the JS thread.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace diffpo {

enum class DType { F32 = 0, F16 = 1, BF16 = 2 };

struct TensorRead {
  std::string name;  // for errors
  std::string file;
  uint64_t byte_offset;  // absolute, in the file
  uint64_t count;        // elements
  DType dtype;
  size_t dst_offset;     // elements, in the destination block
};

// Reads each tensor into dst (elements of dst_dtype, F32 or BF16: converted exactly where the file's
// dtype fits, rounded to nearest even from F32 to BF16) in one streaming pass of bounded memory, and
// refuses a tensor holding NaN or an infinity (Error ERR_CHECKPOINT naming it, the file and the index):
// one such weight would make every logit non-finite.
void read_tensors(const std::vector<TensorRead>& reads, void* dst, DType dst_dtype);

struct TensorWrite {
  size_t src_offset, count;  // elements, in the source block
};

// Writes [u64 header length][header][tensor data in order] to path and fsyncs it; src holds elements
// of src_dtype (F32 or BF16), written as dtype (F32 or BF16).
void write_safetensors(const std::string& path, const std::string& header, const std::vector<TensorWrite>& writes,
                       const void* src, DType src_dtype, DType dtype);

}  // namespace diffpo
