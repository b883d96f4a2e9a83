import XCTest
import CQLoRAKernels
@testable import QLoRA

/// cq_fused_linear_ex with bf16 compute at small M (< 64): the bf16 nibble-streaming tiles
/// (gemv_bf16.c) against a double-precision reference, across thread counts, and the f32
/// fallback where they do not apply (K not a multiple of the block, blocks smaller than 64).
final class KernelBF16GemvTests: XCTestCase {
    typealias Shape = KernelTests.Shape

    /// K multiples of 64, N not a multiple of 4 (short last tile), r = 0 and 8, with and without
    /// bias, plain and double-quant, NF4 and FP4, several blocks per row and nested-block crossings.
    static let shapes: [Shape] = [
        Shape(M: 1, N: 37, K: 256, r: 8, blockSize: 64),
        Shape(M: 1, N: 21, K: 384, r: 0, blockSize: 128, quant: .fp4, doubleQuant: false, bias: false),
        Shape(M: 1, N: 13, K: 512, r: 8, blockSize: 256, quant: .fp4),
        Shape(M: 1, N: 110, K: 192, r: 8, blockSize: 64, doubleQuant: true, bias: false), // 4-row tiles cross nested blocks
        Shape(M: 1, N: 30, K: 1024, r: 0, blockSize: 1024, doubleQuant: false),
        Shape(M: 1, N: 9, K: 64, r: 8, blockSize: 64, quant: .fp4, doubleQuant: false),
    ]
    static let rowCounts = [1, 3, 17, 63]

    func testBF16SmallMMatchesReference() throws {
        let hasBF16 = cq_cpu_has_avx512_bf16() != 0
        var worstError: Float = 0, worstCase = ""
        for (n, base) in Self.shapes.enumerated() {
            for M in Self.rowCounts {
                var s = base
                s.M = M
                let i = try KernelTests.inputs(s, seed: UInt64(500 + 10 * n + M))
                let what = "M=\(M) N=\(s.N) K=\(s.K) r=\(s.r) bs=\(s.blockSize) \(s.quant) dq=\(s.doubleQuant) bias=\(s.bias)"
                let ref = KernelTests.reference(s, i)
                let (y1, ran) = KernelTests.fusedEx(s, i, threads: 1, bf16: true)
                if hasBF16 {
                    XCTAssertTrue(ran, "bf16 small-M path taken, \(what)")
                } else {
                    XCTAssertFalse(ran, "no AVX512-BF16: f32, \(what)")
                }
                assertClose(y1, ref, relative: 5e-3, "bf16 vs double reference, \(what)")
                let scale = max(ref.map { abs($0) }.max() ?? 0, 1e-30)
                let err = zip(y1, ref).map { abs($0 - $1) }.max()! / scale
                if err > worstError { worstError = err; worstCase = what }
                let (y2, ran2) = KernelTests.fusedEx(s, i, threads: 2, bf16: true)
                XCTAssertEqual(ran2, ran, what)
                assertBitIdentical(y2, y1, "bf16 2 vs 1 threads, \(what)")
                assertBitIdentical(KernelTests.fusedEx(s, i, threads: 3, bf16: true).0, y1, "bf16 3 vs 1 threads, \(what)")
            }
        }
        print("bf16 small-M: worst |y - ref| / max|ref| = \(worstError) at \(worstCase)")
        if !hasBF16 { throw XCTSkip("CPU without AVX512-BF16: only the f32 fallback was checked") }
    }

    /// Identity rows of x pick single weight columns: y must be exactly bf16(W'[n, c]) (products
    /// with 1.0 and zeros are exact in f32), which checks the nibble order and the table.
    func testBF16DecodeIsRoundedDequantizedWeight() throws {
        guard cq_cpu_has_avx512_bf16() != 0 else { throw XCTSkip("CPU without AVX512-BF16") }
        for s in [Shape(M: 4, N: 23, K: 192, r: 0, blockSize: 64, bias: false),
                  Shape(M: 4, N: 110, K: 192, r: 0, blockSize: 64, quant: .fp4, bias: false),
                  Shape(M: 4, N: 7, K: 256, r: 0, blockSize: 128, doubleQuant: false, bias: false)] {
            let i = try KernelTests.inputs(s, seed: 77)
            let cols = [0, 33, 62, s.K - 1]
            var x = [Float](repeating: 0, count: s.M * s.K)
            for (m, c) in cols.enumerated() { x[m * s.K + c] = 1 }
            var xi = i
            xi.x = x
            let (y, ran) = KernelTests.fusedEx(s, xi, threads: 2, bf16: true)
            XCTAssertTrue(ran)
            for (m, c) in cols.enumerated() {
                for j in 0..<s.N {
                    let want = Self.bf16(i.wdq[j * s.K + c])
                    if y[m * s.N + j].bitPattern != want.bitPattern {
                        XCTFail("K=\(s.K) bs=\(s.blockSize): y[\(m), \(j)] = \(y[m * s.N + j]) but bf16(W'[\(j), \(c)]) = \(want)")
                        return
                    }
                }
            }
        }
    }

    /// Round to nearest even to bf16, back to Float.
    static func bf16(_ f: Float) -> Float {
        let u = f.bitPattern
        return Float(bitPattern: (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000)
    }

    /// K % block_size != 0 or blocks of 32: returns 0 and is exactly cq_fused_linear.
    func testFallbackCasesAreTheF32Path() throws {
        let shapes = [Shape(M: 1, N: 37, K: 96, r: 4, blockSize: 64),
                      Shape(M: 17, N: 13, K: 301, r: 8, blockSize: 64, quant: .fp4, bias: false),
                      Shape(M: 3, N: 21, K: 128, r: 0, blockSize: 32, doubleQuant: false),
                      Shape(M: 63, N: 9, K: 160, r: 8, blockSize: 128)]
        for (n, s) in shapes.enumerated() {
            let i = try KernelTests.inputs(s, seed: UInt64(600 + n))
            let what = "M=\(s.M) N=\(s.N) K=\(s.K) bs=\(s.blockSize)"
            for threads in [1, 2] {
                let (y, ran) = KernelTests.fusedEx(s, i, threads: threads, bf16: true)
                XCTAssertFalse(ran, "falls back to f32, \(what)")
                assertBitIdentical(y, KernelTests.fused(s, i, threads: threads), "fallback is cq_fused_linear, \(what)")
            }
        }
    }
}
