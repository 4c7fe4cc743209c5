// MPI through dlopen: the handful of calls data parallelism needs, against the two ABIs MPI libraries
// ship. Open MPI (libmpi.so.40) passes handles as pointers to exported objects; MPICH and its
// derivatives (libmpi.so.12: Intel MPI, Cray MPICH, MVAPICH) as integer constants from its mpi.h.
#include "mpi_world.h"

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "../common/errors.h"

namespace diffpo {
namespace {

constexpr int kThreadSerialized = 2;  // MPI_THREAD_SERIALIZED in both ABIs

// The calls, with H the ABI's handle type (a pointer for Open MPI, int for MPICH).
template <typename H>
struct Api {
  H comm_world{}, f32{}, f64{}, byte{}, sum{};
  void* in_place = nullptr;
  int (*Initialized)(int*) = nullptr;
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Comm_rank)(H, int*) = nullptr;
  int (*Comm_size)(H, int*) = nullptr;
  int (*Allreduce)(const void*, void*, int, H, H, H) = nullptr;
  int (*Bcast)(void*, int, H, int, H) = nullptr;
  int (*Barrier)(H) = nullptr;
  int (*Abort)(H, int) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Get_library_version)(char*, int*) = nullptr;
  int (*Error_string)(int, char*, int*) = nullptr;
};

struct State {
  std::mutex mu;
  void* lib = nullptr;
  bool openmpi = false;
  Api<void*> ompi;
  Api<int> mpich;
  MpiWorld world;
  bool initialised = false, finalised = false;
};

State& state() {
  static State s;
  return s;
}

void* symbol(void* lib, const char* name, const std::string& path) {
  void* p = dlsym(lib, name);
  if (!p) throw Error("ERR_MPI", path + " has no symbol " + name + " (is it an MPI library?)");
  return p;
}

template <typename H>
void bind_calls(Api<H>& a, void* lib, const std::string& path) {
  auto get = [&](auto& fn, const char* name) { fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(symbol(lib, name, path)); };
  get(a.Initialized, "MPI_Initialized");
  get(a.Init_thread, "MPI_Init_thread");
  get(a.Comm_rank, "MPI_Comm_rank");
  get(a.Comm_size, "MPI_Comm_size");
  get(a.Allreduce, "MPI_Allreduce");
  get(a.Bcast, "MPI_Bcast");
  get(a.Barrier, "MPI_Barrier");
  get(a.Abort, "MPI_Abort");
  get(a.Finalize, "MPI_Finalize");
  get(a.Get_library_version, "MPI_Get_library_version");
  get(a.Error_string, "MPI_Error_string");
}

template <typename H>
void check(const Api<H>& a, int rc, const char* what) {
  if (rc == 0) return;
  std::vector<char> msg(8192);
  int len = 0;
  std::string text = a.Error_string(rc, msg.data(), &len) == 0 ? std::string(msg.data(), (size_t)std::max(0, len)) : "error " + std::to_string(rc);
  throw Error("ERR_MPI", std::string(what) + " failed: " + text);
}

template <typename H>
MpiWorld init_with(Api<H>& a) {
  int done = 0;
  a.Initialized(&done);
  if (!done) {
    int provided = 0;
    check(a, a.Init_thread(nullptr, nullptr, kThreadSerialized, &provided), "MPI_Init_thread");
    if (provided < kThreadSerialized)
      throw Error("ERR_MPI", "the MPI library provides thread level " + std::to_string(provided) +
                                 "; diffpo runs collectives off the main thread and needs MPI_THREAD_SERIALIZED (2)");
  }
  MpiWorld w;
  check(a, a.Comm_rank(a.comm_world, &w.rank), "MPI_Comm_rank");
  check(a, a.Comm_size(a.comm_world, &w.size), "MPI_Comm_size");
  std::vector<char> v(8192);
  int len = 0;
  if (a.Get_library_version(v.data(), &len) == 0) {
    w.version.assign(v.data(), (size_t)std::max(0, len));
    w.version = w.version.substr(0, w.version.find_first_of("\n,"));
  }
  return w;
}

template <typename F>
auto with_api(State& s, F&& f) {
  if (!s.initialised || s.finalised) throw Error("ERR_MPI", "MPI is not initialised (call mpiInit first) or was finalised");
  return s.openmpi ? f(s.ompi) : f(s.mpich);
}

}  // namespace

MpiWorld mpi_init() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.initialised) return s.world;
  if (s.finalised) throw Error("ERR_MPI", "MPI was finalised in this process and cannot start again");
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("DIFFPO_MPI_LIBRARY"); env && *env)
    candidates = {env};
  else if (!std::getenv("OMPI_COMM_WORLD_SIZE") && std::getenv("PMI_SIZE"))  // MPICH's Hydra launched us
    candidates = {"libmpi.so.12", "libmpich.so.12", "libmpi.so.40", "libmpi.so"};
  else
    candidates = {"libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"};
  // MPICH (and Open MPI on InfiniBand) run over UCX, whose default memory hooks replace malloc and
  // patch mmap under V8's background threads: about one MPICH launch in 25 crashed Node inside V8's
  // compiler. Off unless the user chose otherwise; UCX then only skips its registration cache.
  setenv("UCX_MEM_MALLOC_HOOKS", "no", 0);
  setenv("UCX_MEM_EVENTS", "no", 0);
  std::string tried, path;
  for (const auto& candidate : candidates) {
    // RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols through the global scope
    s.lib = dlopen(candidate.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (s.lib) {
      path = candidate;
      break;
    }
    const char* err = dlerror();
    tried += "\n  " + candidate + ": " + (err ? err : "not found");
  }
  if (!s.lib)
    throw Error("ERR_MPI", "no MPI library could be loaded (install one, e.g. apt-get install openmpi-bin libopenmpi-dev, or set DIFFPO_MPI_LIBRARY):" + tried);
  s.openmpi = dlsym(s.lib, "ompi_mpi_comm_world") != nullptr;
  if (s.openmpi) {
    Api<void*>& a = s.ompi;
    bind_calls(a, s.lib, path);
    a.comm_world = symbol(s.lib, "ompi_mpi_comm_world", path);
    a.f32 = symbol(s.lib, "ompi_mpi_float", path);
    a.f64 = symbol(s.lib, "ompi_mpi_double", path);
    a.byte = symbol(s.lib, "ompi_mpi_byte", path);
    a.sum = symbol(s.lib, "ompi_mpi_op_sum", path);
    a.in_place = reinterpret_cast<void*>(1);
    s.world = init_with(a);
  } else {
    Api<int>& a = s.mpich;
    bind_calls(a, s.lib, path);
    a.comm_world = 0x44000000;
    a.f32 = 0x4c00040a;
    a.f64 = 0x4c00080b;
    a.byte = 0x4c00010d;
    a.sum = 0x58000003;
    a.in_place = reinterpret_cast<void*>(-1);
    s.world = init_with(a);
  }
  s.world.library = path;
  s.initialised = true;
  return s.world;
}

void mpi_all_reduce_sum(void* data, size_t count, bool f64, size_t bucket) {
  bucket = std::clamp<size_t>(bucket, 1, INT_MAX);
  const size_t elem = f64 ? 8 : 4;
  with_api(state(), [&](auto& a) {
    for (size_t off = 0; off < count; off += bucket) {
      const int n = (int)std::min(bucket, count - off);
      check(a, a.Allreduce(a.in_place, static_cast<char*>(data) + off * elem, n, f64 ? a.f64 : a.f32, a.sum, a.comm_world), "MPI_Allreduce");
    }
    return 0;
  });
}

void mpi_broadcast(void* data, size_t bytes, int root) {
  with_api(state(), [&](auto& a) {
    for (size_t off = 0; off < bytes; off += INT_MAX) {
      const int n = (int)std::min<size_t>(INT_MAX, bytes - off);
      check(a, a.Bcast(static_cast<char*>(data) + off, n, a.byte, root, a.comm_world), "MPI_Bcast");
    }
    return 0;
  });
}

void mpi_barrier() {
  with_api(state(), [&](auto& a) {
    check(a, a.Barrier(a.comm_world), "MPI_Barrier");
    return 0;
  });
}

void mpi_abort(int code) {
  State& s = state();
  // the launcher forwards output asynchronously: give the error message time to get out before the job dies
  std::fflush(nullptr);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  if (s.initialised && !s.finalised) with_api(s, [&](auto& a) { return a.Abort(a.comm_world, code); });
  std::_Exit(code);
}

void mpi_finalize() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.initialised || s.finalised) return;
  s.finalised = true;
  if (s.openmpi)
    s.ompi.Finalize();
  else
    s.mpich.Finalize();
}

}  // namespace diffpo
