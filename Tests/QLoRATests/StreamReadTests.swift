import XCTest
import CQLoRAKernels

/// cq_stream_read, the benchmarks' read ceiling: it must touch every line (its XOR equals a
/// scalar XOR of the data) on every ISA path and thread count, or the ceiling would be too fast.
final class StreamReadTests: XCTestCase {
    func testReadsEveryLineOnEveryISAAndThreadCount() throws {
        for lines in [1, 3, 4, 5, 1000, 4099] {
            let bytes = lines * 64
            let raw = try XCTUnwrap(cq_alloc_aligned(bytes))
            defer { cq_free_aligned(raw) }
            let words = raw.bindMemory(to: UInt64.self, capacity: bytes / 8)
            var expected: UInt64 = 0
            for i in 0..<(bytes / 8) {
                words[i] = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(lines)
                expected ^= words[i]
            }
            try forEachISA { isa in
                for threads in [1, 2, 3] {
                    let got = cq_stream_read(raw, bytes, Int32(threads))
                    // The SIMD paths XOR lanes into one vector and fold it: the same XOR of all words.
                    XCTAssertEqual(got, expected, "\(isa), \(lines) lines, \(threads) threads")
                }
            }
        }
    }
}
