import XCTest
import CQLoRAKernels
@testable import QLoRA

/// Every SIMD path of cq_dequantize_4bit / cq_dequantize_rows gives the bits of one f32 multiply
/// per element, on shapes where rows start mid-block and mid-byte.
final class QuantKernelPathTests: XCTestCase {
    /// Runs `body` once per ISA this CPU has (portable, AVX2, AVX-512), restoring the level in force.

    /// out[j] = code[nibble j] · absmax[j / blockSize], computed in Swift (one Float multiply).
    func expected(_ q: QuantizedTensor) -> [Float] {
        let code = q.codebook, absmax: [Float]
        switch q.statistics {
        case let .plain(a): absmax = a
        case let .double(s):
            absmax = s.quantizedAbsmax.enumerated().map { i, v in
                let scaled = s.code2[Int(v)] * s.absmax2[i / s.blockSize2]
                return scaled + s.offset
            }
            assertBitIdentical(s.decodedAbsmax(), absmax, "decodedAbsmax")
        }
        return (0..<q.count).map { j in
            let byte = q.packed[j >> 1]
            return code[Int(j & 1 == 0 ? byte >> 4 : byte & 0x0F)] * absmax[j / q.blockSize]
        }
    }

    func rows(_ q: QuantizedTensor, _ row0: Int, _ count: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: count * q.shape[1])
        out.withUnsafeMutableBufferPointer { buffer in
            q.withKernelView { cq_dequantize_rows($0, Int64(row0), Int64(count), buffer.baseAddress) }
        }
        return out
    }

    func testEveryPathMatchesScalarOnOddShapes() throws {
        let shapes = [(1, 1), (1, 2), (5, 3), (33, 33), (7, 129), (3, 1001), (64, 64), (100, 70), (96, 160), (9, 17)]
        var seed: UInt64 = 100
        for (r, c) in shapes {
            for bs in [32, 64, 128, 256] {
                for type in QuantType.allCases {
                    for double in [false, true] {
                        seed += 1
                        let q = try randomQuantizedWeight(rows: r, cols: c, blockSize: bs, type: type, double: double, seed: seed, absmaxFloor: 0)
                        let want = expected(q)
                        let label = "\(r)x\(c) bs \(bs) \(type) double \(double)"
                        forEachISA { isa in
                            for threads in [1, 2] {
                                assertBitIdentical(q.dequantize(threads: threads).scalars, want, "\(label) \(isa) threads \(threads)")
                            }
                            for row0 in 0..<r {
                                for count in [1, 2, 3, r - row0] where count >= 1 && row0 + count <= r {
                                    assertBitIdentical(rows(q, row0, count), Array(want[(row0 * c)..<((row0 + count) * c)]),
                                                       "\(label) \(isa) rows \(row0)+\(count)")
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Large enough (> 65536 elements) for the threaded path, with odd cols and big blocks.
    func testEveryPathMatchesScalarOnThreadedShapes() throws {
        for (r, c, bs) in [(301, 263, 64), (257, 515, 4096), (1024, 96, 32)] {
            for type in QuantType.allCases {
                let q = try randomQuantizedWeight(rows: r, cols: c, blockSize: bs, type: type, double: true, seed: UInt64(r * c + bs), absmaxFloor: 0)
                let want = expected(q)
                forEachISA { isa in
                    for threads in [1, 2, 3] {
                        assertBitIdentical(q.dequantize(threads: threads).scalars, want, "\(r)x\(c) bs \(bs) \(type) \(isa) threads \(threads)")
                    }
                    for (row0, count) in [(0, r), (1, 7), (r / 2, r - r / 2), (r - 1, 1), (13, 64)] {
                        assertBitIdentical(rows(q, row0, count), Array(want[(row0 * c)..<((row0 + count) * c)]),
                                           "\(r)x\(c) bs \(bs) \(type) \(isa) rows \(row0)+\(count)")
                    }
                }
            }
        }
    }

    func testReferenceCasesOnEveryPath() throws {
        for c in try ReferenceWeightCase.all() {
            let stored = try QuantizedTensor(shape: c.shape, quantType: c.quantType, blockSize: c.blockSize,
                                             packed: try c.bytes("packed"), statistics: .double(try c.storedDoubleQuantState()))
            let want = try c.floats("dq_dequant")
            forEachISA { isa in
                assertBitIdentical(stored.dequantize(threads: 2).scalars, want, "\(c.name) \(isa)")
                let cols = c.shape[1]
                for (row0, count) in [(0, 1), (1, 2), (c.shape[0] - 3, 3)] {
                    assertBitIdentical(rows(stored, row0, count), Array(want[(row0 * cols)..<((row0 + count) * cols)]),
                                       "\(c.name) \(isa) rows \(row0)+\(count)")
                }
            }
        }
    }

    func testSetISARestores() {
        let original = cq_detect_isa()
        forEachISA { _ in }
        XCTAssertEqual(cq_detect_isa(), original)
    }
}
