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

let profileHelp: ArgumentHelp = "Print the wall time of every plan step (summed per kernel and per layer-folded label, with GFLOP/s) to stderr at the end."
