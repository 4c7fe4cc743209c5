// The prebuilt addon must load on glibc 2.28 (RHEL/Alma/Rocky 8, Node 20's own floor) although it is
// built on a newer glibc, with libstdc++ linked statically (binding.gyp) so no GLIBCXX version is
// needed. What that static libstdc++ and its headers ask of a newer glibc is answered here, inside
// the addon (hidden: nothing is exported), and test/package.test.ts reads the versions the .node
// file still needs.
#if defined(__linux__) && defined(__x86_64__)
#include <features.h>
#if defined(__GLIBC__)
#include <sys/random.h>

#include <cstddef>

// libstdc++ 11+ reads __libc_single_threaded (glibc 2.32) to skip atomic reference counts in
// single-threaded programs; 0 means "maybe multi-threaded": the atomic path, always right.
extern "C" {
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;
}

// glibc 2.34 moved the pthread functions into libc under new default versions; every x86-64 glibc
// has them under GLIBC_2.2.5 (libpthread before 2.34, libc's compatibility symbols since), and the
// static libstdc++ calls these through the hidden definitions below.
#define DIFFPO_PIN(ret, name, params, args)                       \
  extern "C" ret diffpo_glibc_##name params;                      \
  __asm__(".symver diffpo_glibc_" #name "," #name "@GLIBC_2.2.5"); \
  extern "C" __attribute__((visibility("hidden"))) ret name params { return diffpo_glibc_##name args; }

typedef unsigned long diffpo_thread_t;  // pthread_t
typedef unsigned int diffpo_key_t;      // pthread_key_t
DIFFPO_PIN(int, pthread_create, (diffpo_thread_t * t, const void* attr, void* (*fn)(void*), void* arg), (t, attr, fn, arg))
DIFFPO_PIN(int, pthread_join, (diffpo_thread_t t, void** ret), (t, ret))
DIFFPO_PIN(int, pthread_detach, (diffpo_thread_t t), (t))
DIFFPO_PIN(int, pthread_once, (int* once, void (*fn)(void)), (once, fn))
DIFFPO_PIN(int, pthread_key_create, (diffpo_key_t * key, void (*dtor)(void*)), (key, dtor))
DIFFPO_PIN(int, pthread_key_delete, (diffpo_key_t key), (key))
DIFFPO_PIN(void*, pthread_getspecific, (diffpo_key_t key), (key))
DIFFPO_PIN(int, pthread_setspecific, (diffpo_key_t key, const void* value), (key, value))

// glibc 2.34 moved dlopen and friends from libdl into libc the same way (the MPI loader uses them).
DIFFPO_PIN(void*, dlopen, (const char* file, int mode), (file, mode))
DIFFPO_PIN(void*, dlsym, (void* handle, const char* name), (handle, name))
DIFFPO_PIN(char*, dlerror, (void), ())

// std::random_device's default token reads arc4random (glibc 2.36); getrandom is glibc 2.25.
extern "C" __attribute__((visibility("hidden"))) unsigned int arc4random(void) {
  unsigned int v = 0;
  for (size_t got = 0; got < sizeof v;) {
    const ssize_t n = getrandom(reinterpret_cast<char*>(&v) + got, sizeof v - got, 0);
    if (n > 0) got += (size_t)n;
  }
  return v;
}
#endif
#endif
