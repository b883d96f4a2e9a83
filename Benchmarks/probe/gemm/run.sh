#!/bin/sh
# GEMM probes (docs/gemm.md), Xeon-style x86-64 with AVX-512; not part of the package build.
# Times are TSC cycles, best of N (robust on a shared machine: a rep that was not preempted),
# as % of the f32 FMA peak measured in the same process (gemm_peak) or 77.7 flop per TSC cycle
# (= 164 GFLOP/s per core on the Emerald Rapids VM; edit PEAK in the .c files elsewhere).
#   gemm_peak     whole calls: micro-kernel in L1, one 96x256 panel, and the fused / dense /
#                 backward GEMMs on SmolLM2's shapes (1 or 2 threads)
#   panel_phases  the panel GEMM instrumented (instrument_panel.py): per 96-row panel, the share
#                 of weight decode / copy, multiply and epilogue of the fastest panel; y cold
#   kn_phases     the backward GEMM instrumented (instrument_kn.py): per 192-column chunk, pack
#                 vs multiply, and the final store's cycles per element; dX cold
# Usage (from the package root): sh Benchmarks/probe/gemm/run.sh [threads]
set -e
P=Benchmarks/probe/gemm; S=Sources/CQLoRAKernels; T=${TMPDIR:-/tmp}/gemm_probe; mkdir -p $T
sh $P/mklib.sh $S $T/plain
clang -O2 -I$S -I$S/include $P/gemm_peak.c $T/plain/lib.a -lomp5 -lm -o $T/gemm_peak
rm -rf $T/src && cp -r $S $T/src && python3 $P/instrument_panel.py $T/src && python3 $P/instrument_kn.py $T/src
sh $P/mklib.sh $T/src $T/instr
clang -O2 -I$S/include $P/panel_phases.c $T/instr/lib.a -lomp5 -lm -o $T/panel_phases
clang -O2 -I$S/include $P/kn_phases.c $T/instr/lib.a -lomp5 -lm -o $T/kn_phases
$T/gemm_peak ${1:-1}; $T/panel_phases ${1:-1}; $T/kn_phases ${1:-1}
