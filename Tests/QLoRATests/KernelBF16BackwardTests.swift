import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The bf16 training kernels (cqlora_bf16.h): dX = dY·W through a 4-bit weight and through an f32
/// weight, and the f32 lm_head forward x·Wᵀ, against a double-precision sum of the bf16-rounded
/// operands (so only the f32 accumulation differs: ≤ 1e-5 of Σ|terms| per output) and against the
/// unrounded f32 product (bf16's own error, ≤ 1e-2 of max|ref|); 1, 2 and 3 threads bitwise. Odd
/// shapes cover the padding (M not a multiple of 12, N odd, K not a multiple of 32).
final class KernelBF16BackwardTests: XCTestCase {
    static let shapes: [(M: Int, N: Int, K: Int, blockSize: Int)] = [(13, 37, 100, 64), (70, 128, 64, 64), (1, 300, 45, 64), (25, 96, 288, 128)]

    static func bf16(_ f: Float) -> Double { Double(floatFromBFloat16Bits(AdapterMerge.bfloat16Bits(f))) }

    /// out[m, k] = Σ_n a[m, n]·b[n, k] in double, with both operands first rounded to bf16 (or not),
    /// and Σ|terms| per output.
    static func product(_ a: [Float], _ b: [Float], M: Int, N: Int, K: Int, rounded: Bool) -> (y: [Float], bound: [Double]) {
        var y = [Float](repeating: 0, count: M * K), bound = [Double](repeating: 0, count: M * K)
        for m in 0..<M {
            for k in 0..<K {
                var s = 0.0, t = 0.0
                for n in 0..<N {
                    let p = rounded ? bf16(a[m * N + n]) * bf16(b[n * K + k]) : Double(a[m * N + n]) * Double(b[n * K + k])
                    s += p; t += abs(p)
                }
                y[m * K + k] = Float(s); bound[m * K + k] = t
            }
        }
        return (y, bound)
    }

    func check(_ got: [Float], rounded: (y: [Float], bound: [Double]), exact: [Float], _ what: String) {
        for i in got.indices {
            XCTAssertLessThanOrEqual(abs(Double(got[i]) - Double(rounded.y[i])), 1e-5 * rounded.bound[i] + 1e-30, "\(what): output \(i) vs bf16-rounded sum")
        }
        let scale = max(exact.map { abs($0) }.max()!, 1e-30)
        let err = zip(got, exact).map { abs($0 - $1) }.max()! / scale
        XCTAssertLessThanOrEqual(err, 1e-2, "\(what): bf16 error vs the f32 product")
    }

    func testDXThroughFourBitWeight() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16 (or capped by QLORA_ISA): the f32 fallback is tested in testFallbackWithoutAVX512BF16") }
        for (n, s) in Self.shapes.enumerated() {
            var rng = SeededRandom(seed: UInt64(900 + n))
            let q = try QuantizedTensor.quantize(Tensor(shape: [s.N, s.K], scalars: rng.floats(s.N * s.K, scale: 0.5)), quantType: n % 2 == 0 ? .nf4 : .fp4,
                                                 blockSize: s.blockSize, doubleQuant: n % 2 == 0, threads: 1)
            let w = q.dequantize(threads: 1).scalars, dy = rng.floats(s.M * s.N)
            let what = "4-bit M=\(s.M) N=\(s.N) K=\(s.K)"
            let run = { (threads: Int) -> [Float] in
                var dx = [Float](repeating: .nan, count: s.M * s.K)
                let ran = q.withKernelView { view in cq_matmul_nn_q4_bf16(dy, Int64(s.M), view, &dx, Int32(threads)) }
                XCTAssertEqual(ran, 1, what)
                return dx
            }
            let dx = run(1)
            check(dx, rounded: Self.product(dy, w, M: s.M, N: s.N, K: s.K, rounded: true),
                  exact: Self.product(dy, w, M: s.M, N: s.N, K: s.K, rounded: false).y, what)
            assertBitIdentical(run(2), dx, "\(what): 2 vs 1 threads")
            assertBitIdentical(run(3), dx, "\(what): 3 vs 1 threads")
        }
    }

    func testDXThroughF32Weight() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16 (or capped by QLORA_ISA)") }
        for (n, s) in Self.shapes.enumerated() {
            var rng = SeededRandom(seed: UInt64(950 + n))
            let w = rng.floats(s.N * s.K, scale: 0.5), dy = rng.floats(s.M * s.N)
            let what = "f32 M=\(s.M) N=\(s.N) K=\(s.K)"
            let run = { (threads: Int) -> [Float] in
                var dx = [Float](repeating: .nan, count: s.M * s.K)
                XCTAssertEqual(cq_matmul_nn_bf16(dy, Int64(s.M), w, Int64(s.N), Int64(s.K), &dx, Int32(threads)), 1, what)
                return dx
            }
            let dx = run(1)
            check(dx, rounded: Self.product(dy, w, M: s.M, N: s.N, K: s.K, rounded: true),
                  exact: Self.product(dy, w, M: s.M, N: s.N, K: s.K, rounded: false).y, what)
            assertBitIdentical(run(2), dx, "\(what): 2 vs 1 threads")
            assertBitIdentical(run(3), dx, "\(what): 3 vs 1 threads")
        }
    }

    /// y = x·Wᵀ: the same product with W transposed first ([K, N] as the reference's b).
    func testLmHeadForward() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16 (or capped by QLORA_ISA)") }
        for (M, N, K) in [(64, 37, 45), (70, 200, 64), (130, 96, 33)] {
            var rng = SeededRandom(seed: UInt64(M * 7 + N))
            let w = rng.floats(N * K, scale: 0.5), x = rng.floats(M * K)
            var wt = [Float](repeating: 0, count: K * N)
            for n in 0..<N { for k in 0..<K { wt[k * N + n] = w[n * K + k] } }
            let what = "nt M=\(M) N=\(N) K=\(K)"
            let run = { (threads: Int) -> [Float] in
                var y = [Float](repeating: .nan, count: M * N)
                let bytes = cq_matmul_nt_scratch_bytes(Int64(M), Int64(K), Int32(threads))
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
                defer { scratch.deallocate() }
                XCTAssertEqual(cq_matmul_nt_bf16(x, Int64(M), w, Int64(N), Int64(K), &y, scratch, Int32(threads)), 1, what)
                return y
            }
            let y = run(1)
            check(y, rounded: Self.product(x, wt, M: M, N: K, K: N, rounded: true), exact: Self.product(x, wt, M: M, N: K, K: N, rounded: false).y, what)
            assertBitIdentical(run(2), y, "\(what): 2 vs 1 threads")
        }
        // Below CQ_BF16_NT_MIN_M rows the caller's f32 kernel runs: nothing is written.
        var y = [Float](repeating: .nan, count: 63 * 8)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: Int(cq_matmul_nt_scratch_bytes(63, 16, 1)), alignment: 64)
        defer { scratch.deallocate() }
        XCTAssertEqual(cq_matmul_nt_bf16([Float](repeating: 1, count: 63 * 16), 63, [Float](repeating: 1, count: 8 * 16), 8, 16, &y, scratch, 1), 0)
        XCTAssertTrue(y.allSatisfy { $0.isNaN })
    }

    /// On every CPU: with the ISA capped below AVX-512 (as QLORA_ISA=avx2 does) the bf16 entry
    /// points report that they did nothing and leave dX untouched, so the plans run f32.
    func testFallbackWithoutAVX512BF16() throws {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        _ = cq_set_isa(CQ_ISA_AVX2)
        XCTAssertEqual(cq_bf16_available(), 0)
        var rng = SeededRandom(seed: 5)
        let q = try QuantizedTensor.quantize(Tensor(shape: [16, 64], scalars: rng.floats(16 * 64)), quantType: .nf4, blockSize: 64, doubleQuant: true, threads: 1)
        let dy = rng.floats(3 * 16)
        var dx = [Float](repeating: .nan, count: 3 * 64)
        XCTAssertEqual(q.withKernelView { cq_matmul_nn_q4_bf16(dy, 3, $0, &dx, 2) }, 0)
        XCTAssertEqual(cq_matmul_nn_bf16(dy, 3, rng.floats(16 * 64), 16, 64, &dx, 2), 0)
        XCTAssertTrue(dx.allSatisfy { $0.isNaN }, "nothing written")
    }
}
