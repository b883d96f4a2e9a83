import Foundation
import ArgumentParser
import QLoRA

/// `--profile`: runs `body` under a `StepProfiler` and prints its table (wall time per plan step,
/// grouped by kernel and by layer) to stderr when `body` returns, so stdout stays the command's own.
func profiled<R>(_ enabled: Bool, _ body: () throws -> R) rethrows -> R {
    guard enabled else { return try body() }
    let profiler = StepProfiler()
    let result = try profiler.recording(body)
    FileHandle.standardError.write(Data((profiler.report() + "\n").utf8))
    return result
}

/// `--ieee-denormals` (run, train, generate): `CompileOptions.flushDenormals` off.
let ieeeDenormalsHelp: ArgumentHelp = "Compute with denormal values (below 1.2e-38 in magnitude) by IEEE gradual underflow, as PyTorch on CPU, instead of flushing them to zero (the default: x86 computes with denormals in microcode, up to ~100x slower; docs/architecture.md, \"Denormals\")."

let profileHelp: ArgumentHelp = "Print the wall time of every plan step (summed per kernel and per layer-folded label, with GFLOP/s) to stderr at the end."
