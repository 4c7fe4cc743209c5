// Force-included into every native source (binding.gyp): the prebuilt addon must load on glibc 2.28
// (RHEL/Alma/Rocky 8, the floor of Node 20 itself) although it is built on a newer glibc. exp, log
// and pow got new default symbol versions in glibc 2.29 (the same functions without the errno
// wrapper); the references are pinned to the versions every x86-64 glibc has. test/package.test.ts
// reads the versions the .node file needs.
#pragma once
#if defined(__linux__) && defined(__x86_64__)
#include <features.h>
#if defined(__GLIBC__)
__asm__(".symver exp,exp@GLIBC_2.2.5");
__asm__(".symver log,log@GLIBC_2.2.5");
__asm__(".symver pow,pow@GLIBC_2.2.5");
#endif
#endif
