import Foundation
import CQLoRAKernels

/// Process-wide runtime facts.
public enum Runtime {
    /// Threads used when an option does not say: `OMP_NUM_THREADS` when it is set to a positive
    /// number (its first entry, as OpenMP reads a list), else the cores this process may use.
    public static var defaultThreads: Int {
        if let value = ProcessInfo.processInfo.environment["OMP_NUM_THREADS"],
           let first = value.split(separator: ",").first,
           let n = Int(first.trimmingCharacters(in: .whitespaces)), n > 0 {
            return n
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The SIMD level the kernels run with on this CPU (after any QLORA_ISA cap).
    public static var isa: String { String(cString: cq_isa_name(cq_detect_isa())) }
}
