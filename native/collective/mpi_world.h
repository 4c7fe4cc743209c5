// The collective layer's MPI implementation, loaded at run time: the product addon links no MPI and
// loads the system's libmpi (dlopen) only when a job is launched by mpirun, so the prebuilt binary
// works without MPI and with whichever MPI a cluster runs (Open MPI's or MPICH's ABI).
#pragma once
#include <cstddef>
#include <string>

namespace diffpo {

struct MpiWorld {
  int rank = 0;
  int size = 1;
  std::string library;  // the libmpi that was loaded
  std::string version;  // MPI_Get_library_version's first line
};

// Loads libmpi ($DIFFPO_MPI_LIBRARY, else the launcher's MPI first: Open MPI's or MPICH's soname) and
// initialises MPI with MPI_THREAD_SERIALIZED (collectives run on libuv's pool, one at a time). Idempotent. Throws Error
// ERR_MPI naming what failed.
MpiWorld mpi_init();

// In-place sum over all ranks of `count` floats or doubles, in buckets of at most `bucket` elements
// (MPI counts are int; a few large messages rather than one per tensor).
void mpi_all_reduce_sum(void* data, size_t count, bool f64, size_t bucket);
void mpi_broadcast(void* data, size_t bytes, int root);
void mpi_barrier();
// Stops every rank of the job (MPI_Abort): the way one rank's error ends the others' waits.
[[noreturn]] void mpi_abort(int code);
void mpi_finalize();

}  // namespace diffpo
