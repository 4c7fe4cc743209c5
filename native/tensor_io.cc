#include "tensor_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/dtype.h"
#include "common/errors.h"

namespace diffpo {

namespace {

struct Fd {
  int fd;
  std::string path;
  Fd(const std::string& p, int flags, mode_t mode = 0) : fd(::open(p.c_str(), flags, mode)), path(p) {
    require(fd >= 0, "ERR_CHECKPOINT", "cannot open " + p + ": " + std::strerror(errno));
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void read_exact(const Fd& f, void* buf, size_t n, uint64_t off) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(f.fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    require(r > 0, "ERR_CHECKPOINT", "unexpected end of file or read error in " + f.path);
    p += r, n -= (size_t)r, off += (uint64_t)r;
  }
}

void write_all(const Fd& f, const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t w = ::write(f.fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    require(w > 0, "ERR_CHECKPOINT", "write failed for " + f.path + ": " + std::strerror(errno));
    p += w, n -= (size_t)w;
  }
}

}  // namespace

namespace {

constexpr uint64_t kChunk = 1 << 20;  // elements converted at a time: the read buffer stays small

inline bool finite_bits_bf16(uint16_t h) { return (h & 0x7f80u) != 0x7f80u; }

float widen(uint16_t h, DType dtype) { return dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h); }

}  // namespace

void read_tensors(const std::vector<TensorRead>& reads, void* dst, DType dst_dtype) {
  require(dst_dtype == DType::F32 || dst_dtype == DType::BF16, "ERR_INVALID_ARGUMENT", "read_tensors: bad destination dtype");
  std::vector<unsigned char> buf;
  std::string open_path;
  std::unique_ptr<Fd> f;
  for (const auto& r : reads) {
    if (!f || open_path != r.file) {
      f.reset(new Fd(r.file, O_RDONLY));
      open_path = r.file;
    }
    const size_t in_bytes = r.dtype == DType::F32 ? 4 : 2;
    for (uint64_t i0 = 0; i0 < r.count; i0 += kChunk) {
      const uint64_t n = std::min(kChunk, r.count - i0);
      uint64_t bad = n;  // index in the chunk of the first non-finite value
      if (dst_dtype == DType::F32) {
        float* out = static_cast<float*>(dst) + r.dst_offset + i0;
        if (r.dtype == DType::F32) {
          read_exact(*f, out, n * 4, r.byte_offset + i0 * 4);
        } else {
          buf.resize(n * 2);
          read_exact(*f, buf.data(), n * 2, r.byte_offset + i0 * 2);
          const uint16_t* h = reinterpret_cast<const uint16_t*>(buf.data());
          for (uint64_t i = 0; i < n; i++) out[i] = widen(h[i], r.dtype);
        }
        for (uint64_t i = 0; i < n && bad == n; i++)
          if (!std::isfinite(out[i])) bad = i;
      } else {
        uint16_t* out = static_cast<uint16_t*>(dst) + r.dst_offset + i0;
        if (r.dtype == DType::BF16) {
          read_exact(*f, out, n * 2, r.byte_offset + i0 * 2);
        } else {
          buf.resize(n * in_bytes);
          read_exact(*f, buf.data(), n * in_bytes, r.byte_offset + i0 * in_bytes);
          const float* fl = reinterpret_cast<const float*>(buf.data());
          const uint16_t* h = reinterpret_cast<const uint16_t*>(buf.data());
          for (uint64_t i = 0; i < n; i++) out[i] = f32_to_bf16(r.dtype == DType::F32 ? fl[i] : widen(h[i], r.dtype));
        }
        for (uint64_t i = 0; i < n && bad == n; i++)
          if (!finite_bits_bf16(out[i])) bad = i;
      }
      if (bad < n) {
        float v;
        if (dst_dtype == DType::F32) v = static_cast<float*>(dst)[r.dst_offset + i0 + bad];
        else v = bf16_to_f32(static_cast<uint16_t*>(dst)[r.dst_offset + i0 + bad]);
        throw Error("ERR_CHECKPOINT", r.file + ": tensor '" + r.name + "' holds " +
                                          (std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity") + " at index " +
                                          std::to_string(i0 + bad));
      }
    }
  }
}

void write_safetensors(const std::string& path, const std::string& header, const std::vector<TensorWrite>& writes,
                       const void* src, DType src_dtype, DType dtype) {
  require(dtype != DType::F16, "ERR_INVALID_ARGUMENT", "saving as F16 is not supported (use f32 or bf16)");
  Fd f(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));  // little-endian
  write_all(f, len, 8);
  write_all(f, header.data(), header.size());
  std::vector<uint16_t> half;
  std::vector<float> wide;
  const float* sf = static_cast<const float*>(src);
  const uint16_t* sh = static_cast<const uint16_t*>(src);
  for (const auto& w : writes)
    for (size_t i0 = 0; i0 < w.count; i0 += kChunk) {
      const size_t c = std::min<size_t>(kChunk, w.count - i0), at = w.src_offset + i0;
      if (src_dtype == dtype) {
        write_all(f, src_dtype == DType::F32 ? (const void*)(sf + at) : (const void*)(sh + at), c * (dtype == DType::F32 ? 4 : 2));
      } else if (dtype == DType::BF16) {  // float32 weights saved as BF16
        half.resize(c);
        for (size_t i = 0; i < c; i++) half[i] = f32_to_bf16(sf[at + i]);
        write_all(f, half.data(), c * 2);
      } else {  // BF16 weights saved as float32: exact
        wide.resize(c);
        for (size_t i = 0; i < c; i++) wide[i] = bf16_to_f32(sh[at + i]);
        write_all(f, wide.data(), c * 4);
      }
    }
  require(::fsync(f.fd) == 0, "ERR_CHECKPOINT", "fsync failed for " + path + ": " + std::strerror(errno));
}

}  // namespace diffpo
