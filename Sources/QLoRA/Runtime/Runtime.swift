import Foundation
import CQLoRAKernels

/// Process-wide runtime facts.
public enum Runtime {
    /// Threads used when an option does not say: the cores this process may use.
    public static var defaultThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// The SIMD level the kernels run with on this CPU (after any QLORA_ISA cap).
    public static var isa: String { String(cString: cq_isa_name(cq_detect_isa())) }
}
