// optimize_fused: rewrites a FusedProgram into one that computes the same bits
// with fewer instructions, fewer elements per row and a smaller scratch row.
//
// Every arithmetic instruction that produces a value an output depends on is
// kept, with the same op on the same values in the same order; the pass only
// deletes copies and dead code, renames where values live, and packs the
// Temp registers into one scratch register whose columns are reused once a
// register is dead:
//   - copy propagation: `copy t <- s` (t a Temp) goes when every read of the
//     copied columns can read s instead (s unchanged meanwhile, t not
//     accumulated into);
//   - destination forwarding: `copy D <- t` (t a Temp) goes when the
//     instructions that computed t[cols] can write D directly (D neither read
//     nor written meanwhile); later reads of t read D;
//   - dead code: instructions whose Temp results are never read;
//   - scratch packing: Temp registers live over disjoint instruction ranges
//     share columns (the CUDA generator's hazard analysis sees the sharing,
//     since it is one register).
//
// Aliasing: as the backends assume (`__restrict__` in generated CUDA), the
// memory of Input and Output registers is disjoint, with one exception that
// the executor produces and the pass keeps exact: Output registers that are
// only ever accumulated into (`*AddTo`, `SubTo`; strided views of the same
// children on a viewed level) may share memory, so they are treated as one
// location whose writes keep their order. Inputs are never written. Temp
// columns must be written before they are read in a row (the compiler's
// programs are); a program that reads scratch it did not write is left as is.
#pragma once

#include "ops/fused_program.h"

namespace copse::ops {

struct FusedOptimizeStats {
  int copies_propagated = 0;  // `copy t <- s` removed, readers of t read s
  int copies_forwarded = 0;   // `copy D <- t` removed, t's writers write D
  int dead_removed = 0;       // instructions whose results were never read
  int scratch_before = 0;     // floats per row
  int scratch_after = 0;
  bool skipped = false;  // a Temp column was read before written: unchanged
};

// Validates the program (as finalize() does: throws copse::Error naming the
// program), rewrites it, and leaves it finalized.
FusedOptimizeStats optimize_fused(FusedProgram& prog);

}  // namespace copse::ops
