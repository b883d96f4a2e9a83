import CQLoRAKernels
import XCTest
@testable import QLoRA

/// Plans flush denormals (x86 FTZ + DAZ) on every kernel thread by default and give the caller
/// its own mode back; `flushDenormals: false` keeps IEEE gradual underflow.
final class DenormalFlushTests: XCTestCase {
    func testPlansFlushDenormalsOnEveryThreadUnlessAskedForIEEE() throws {
        try XCTSkipUnless(cq_float_mode_supported() != 0, "FTZ / DAZ are x86-64 modes")
        let n = 50_000 // above the elementwise kernels' one-thread cutoff: with 2 threads each takes half
        let tiny = (0..<n).map { Float($0 % 7 + 1) * 1e-39 }   // denormal operands (DAZ)
        let small = (0..<n).map { Float($0 % 5 + 1) * 1e-20 }  // normal values whose squares are denormal (FTZ)
        XCTAssertTrue(tiny.allSatisfy(\.isSubnormal))
        XCTAssertTrue(small.allSatisfy { ($0 * $0).isSubnormal })
        let g = Graph()
        let a = g.input("a", shape: [n]), b = g.input("b", shape: [n]), z = g.input("z", shape: [n])
        g.output("sum", try g.add(a, z))
        g.output("square", try g.mul(b, b))
        let feeds = ["a": try Tensor(shape: [n], scalars: tiny), "b": try Tensor(shape: [n], scalars: small),
                     "z": try Tensor(shape: [n], scalars: [Float](repeating: 0, count: n))]
        /// The first index where the values differ, or nil (short messages for 50 000 values).
        func firstDifference(_ a: [Float], _ b: [Float]) -> Int? { a.indices.first { a[$0].bitPattern != b[$0].bitPattern } }
        let zeros = [Float](repeating: 0, count: n)
        for threads in [1, 2] {
            let flushed = try g.compile(CompileOptions(threads: threads)).run(feeds)
            XCTAssertNil(firstDifference(flushed["sum"]!.scalars, zeros), "\(threads) threads: denormal operands count as zero")
            XCTAssertNil(firstDifference(flushed["square"]!.scalars, zeros), "\(threads) threads: denormal results are flushed")
            XCTAssertEqual(cq_float_mode_flushes(), 0, "the caller's IEEE mode is back after the run")
            // IEEE: the values as computed here; a caller that flushes itself keeps doing so afterwards.
            let own = cq_float_mode_set(1)
            let ieee = try g.compile(CompileOptions(threads: threads, flushDenormals: false)).run(feeds)
            XCTAssertEqual(cq_float_mode_flushes(), 1, "the caller's flushing mode is back after the run")
            cq_float_mode_restore(own)
            XCTAssertNil(firstDifference(ieee["sum"]!.scalars, tiny), "\(threads) threads")
            XCTAssertNil(firstDifference(ieee["square"]!.scalars, small.map { $0 * $0 }), "\(threads) threads")
        }
    }
}
