// The row kernels for any x86-64 (or other) CPU (see row_kernels.h).
#define DIFFPO_ROW_KERNELS_IMPL portable
#include "row_kernels.h"

namespace diffpo {
const RowKernels kRowKernelsPortable = portable::kTable;
}
