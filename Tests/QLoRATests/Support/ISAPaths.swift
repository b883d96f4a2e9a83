import CQLoRAKernels
import XCTest

/// Runs `body` once per SIMD path this CPU (and QLORA_ISA) allows — portable, AVX2, AVX-512, in that
/// order — with the path selected, then restores the detected one; fails if the portable path did
/// not run.
func forEachISA(_ body: (cq_isa, String) throws -> Void) rethrows {
    let original = cq_detect_isa()
    defer { _ = cq_set_isa(original) }
    var ran: [String] = []
    for isa in [CQ_ISA_PORTABLE, CQ_ISA_AVX2, CQ_ISA_AVX512] {
        guard cq_set_isa(isa) == isa else { continue } // the CPU (or QLORA_ISA) caps it
        ran.append(String(cString: cq_isa_name(isa)))
        try body(isa, ran.last!)
    }
    XCTAssertTrue(ran.contains("portable"))
}

/// The same, giving the path's name only.
func forEachISA(_ body: (String) throws -> Void) rethrows {
    try forEachISA { (_: cq_isa, name: String) in try body(name) }
}
