// The row kernels compiled for AVX2/FMA (see row_kernels.h); used only after a runtime CPU check.
#define DIFFPO_ROW_KERNELS_IMPL avx2
#include "row_kernels.h"

namespace diffpo {
const RowKernels kRowKernelsAvx2 = avx2::kTable;
}
