#include "tensor_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
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

void read_tensors(const std::vector<TensorRead>& reads, float* dst) {
  std::vector<uint16_t> half;
  std::string open_path;
  std::unique_ptr<Fd> f;
  for (const auto& r : reads) {
    if (!f || open_path != r.file) {
      f.reset(new Fd(r.file, O_RDONLY));
      open_path = r.file;
    }
    float* out = dst + r.dst_offset;
    if (r.dtype == DType::F32) {
      read_exact(*f, out, r.count * 4, r.byte_offset);
      continue;
    }
    half.resize(r.count);
    read_exact(*f, half.data(), r.count * 2, r.byte_offset);
    if (r.dtype == DType::BF16)
      for (uint64_t i = 0; i < r.count; i++) out[i] = bf16_to_f32(half[i]);
    else
      for (uint64_t i = 0; i < r.count; i++) out[i] = f16_to_f32(half[i]);
  }
}

void write_safetensors(const std::string& path, const std::string& header, const std::vector<TensorWrite>& writes,
                       const float* src, DType dtype) {
  require(dtype != DType::F16, "ERR_INVALID_ARGUMENT", "saving as F16 is not supported (use f32 or bf16)");
  Fd f(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const uint64_t n = header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));  // little-endian
  write_all(f, len, 8);
  write_all(f, header.data(), header.size());
  std::vector<uint16_t> half;
  for (const auto& w : writes) {
    const float* p = src + w.src_offset;
    if (dtype == DType::F32) {
      write_all(f, p, w.count * 4);
    } else {
      half.resize(w.count);
      for (size_t i = 0; i < w.count; i++) half[i] = f32_to_bf16(p[i]);
      write_all(f, half.data(), w.count * 2);
    }
  }
  require(::fsync(f.fd) == 0, "ERR_CHECKPOINT", "fsync failed for " + path + ": " + std::strerror(errno));
}

}  // namespace diffpo
