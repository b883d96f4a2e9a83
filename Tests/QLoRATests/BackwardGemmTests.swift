import CQLoRAKernels
import XCTest
@testable import QLoRA

/// The backward GEMMs of gemm_kn.c — dX = dY·W through an f32 or a 4-bit weight (cq_matmul_nn,
/// cq_matmul_nn_q4) and dW = dYᵀ·X (cq_matmul_tn) — against a double-precision loop, on every
/// ISA path this CPU has (portable, AVX2, AVX-512), on shapes with partial panels, tiles and
/// reduction blocks (M = 1, 3, 17, 256; N and K not multiples of anything), the LoRA shapes
/// (a 16-wide side) and a reduction long enough for several packed super-blocks; 1 and 2 threads
/// give the same bits, and the plan-scratch entry points the same bits as the self-allocating ones.
final class BackwardGemmTests: XCTestCase {
    /// Σ_s a(i, s)·b(s, j) in double, and Σ |terms| (the rounding scale of an f32 sum).
    func reference(rows: Int, cols: Int, depth: Int, _ a: (Int, Int) -> Float, _ b: (Int, Int) -> Float) -> (exact: [Double], scale: [Double]) {
        var exact = [Double](repeating: 0, count: rows * cols), scale = exact
        for i in 0..<rows {
            for s in 0..<depth {
                let x = Double(a(i, s))
                if x == 0 { continue }
                for j in 0..<cols {
                    let t = x * Double(b(s, j))
                    exact[i * cols + j] += t
                    scale[i * cols + j] += abs(t)
                }
            }
        }
        return (exact, scale)
    }

    func assertClose(_ got: [Float], _ ref: (exact: [Double], scale: [Double]), _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        var bad = 0
        for i in got.indices where !(abs(Double(got[i]) - ref.exact[i]) <= 1e-5 * ref.scale[i] + 1e-30) {
            if bad < 3 { XCTFail("\(what) [\(i)]: \(got[i]) vs \(ref.exact[i])", file: file, line: line) }
            bad += 1
        }
    }


    /// Runs `body(threads)` for 1 and 2 threads and checks the two results are the same bits.
    func sameForThreads(_ what: String, _ body: (Int32) -> [Float]) -> [Float] {
        let one = body(1)
        assertBitIdentical(body(2), one, "\(what): 1 vs 2 threads")
        return one
    }

    // (M, N, K): dY [M, N], W [N, K]. Includes the LoRA shapes dY·B (K = 16) and dh·A (N = 16).
    let shapes = [(1, 1, 1), (1, 300, 7), (3, 77, 129), (17, 50, 150), (17, 513, 31), (256, 100, 16), (256, 16, 200),
                  (3, 600, 16), (256, 300, 200), (37, 1000, 145), (256, 257, 33)]

    func testDenseInputGradientMatchesDoubleLoop() {
        forEachISA { isa in
            for (m, n, k) in shapes {
                var rng = SeededRandom(seed: UInt64(m * 7919 + n * 31 + k))
                let dy = rng.floats(m * n), w = rng.floats(n * k)
                let label = "\(isa) dY·W \(m)x\(n)x\(k)"
                let got = sameForThreads(label) { threads in
                    var dx = [Float](repeating: .nan, count: m * k)
                    cq_matmul_nn(dy, Int64(m), w, Int64(n), Int64(k), &dx, threads)
                    return dx
                }
                assertClose(got, reference(rows: m, cols: k, depth: n, { dy[$0 * n + $1] }, { w[$0 * k + $1] }), label)
                var planned = [Float](repeating: .nan, count: m * k)
                var scratch = [Float](repeating: .nan, count: Int(cq_gemm_nn_scratch_bytes(Int64(m), Int64(n), Int64(k), 0, 2)) / 4 + 16)
                scratch.withUnsafeMutableBytes { s in
                    let aligned = UnsafeMutableRawPointer(bitPattern: (Int(bitPattern: s.baseAddress!) + 63) & ~63)
                    cq_gemm_nn(dy, Int64(m), w, Int64(n), Int64(k), &planned, aligned, 2)
                }
                assertBitIdentical(planned, got, "\(label): plan scratch")
            }
        }
    }

    func testFourBitInputGradientMatchesDoubleLoopOnTheDecodedWeight() throws {
        var seed: UInt64 = 500
        try forEachISA { isa in
            for (m, n, k) in shapes {
                for (blockSize, double) in [(64, false), (32, true)] {
                    seed += 1
                    let q = try randomQuantizedWeight(rows: n, cols: k, blockSize: blockSize, double: double, seed: seed)
                    let w = q.dequantize(threads: 1).scalars
                    var rng = SeededRandom(seed: seed)
                    let dy = rng.floats(m * n)
                    let label = "\(isa) dY·W4 \(m)x\(n)x\(k) bs \(blockSize) double \(double)"
                    let got = sameForThreads(label) { threads in
                        var dx = [Float](repeating: .nan, count: m * k)
                        q.withKernelView { cq_matmul_nn_q4(dy, Int64(m), $0, &dx, threads) }
                        return dx
                    }
                    assertClose(got, reference(rows: m, cols: k, depth: n, { dy[$0 * n + $1] }, { w[$0 * k + $1] }), label)
                }
            }
        }
    }

    func testWeightGradientMatchesDoubleLoop() {
        forEachISA { isa in
            for (m, n, k) in shapes {
                var rng = SeededRandom(seed: UInt64(m * 13 + n * 7 + k))
                let dy = rng.floats(m * n), x = rng.floats(m * k)
                let label = "\(isa) dYᵀ·X \(m)x\(n)x\(k)"
                let got = sameForThreads(label) { threads in
                    var dw = [Float](repeating: .nan, count: n * k)
                    cq_matmul_tn(dy, x, Int64(m), Int64(n), Int64(k), &dw, threads)
                    return dw
                }
                assertClose(got, reference(rows: n, cols: k, depth: m, { dy[$1 * n + $0] }, { x[$0 * k + $1] }), label)
            }
        }
    }

    /// dY [256, 4500]: the packed dY exceeds one 4 MiB super-block, so the reduction runs over two
    /// packing rounds (the second not a whole number of 256-blocks) — still one order per output.
    func testLongReductionOverSeveralPackedSuperBlocks() {
        let (m, n, k) = (256, 4500, 40)
        var rng = SeededRandom(seed: 77)
        let dy = rng.floats(m * n), w = rng.floats(n * k)
        let got = sameForThreads("dY·W 256x4500x40") { threads in
            var dx = [Float](repeating: .nan, count: m * k)
            cq_matmul_nn(dy, Int64(m), w, Int64(n), Int64(k), &dx, threads)
            return dx
        }
        assertClose(got, reference(rows: m, cols: k, depth: n, { dy[$0 * n + $1] }, { w[$0 * k + $1] }), "dY·W 256x4500x40")
    }

    /// An empty reduction writes zeros (a weight with no rows), and empty results write nothing.
    func testEmptyReductionGivesZeros() {
        var dx = [Float](repeating: .nan, count: 6)
        cq_matmul_nn([], 2, [], 0, 3, &dx, 2)
        XCTAssertEqual(dx, [Float](repeating: 0, count: 6))
        var dw = [Float](repeating: .nan, count: 6)
        cq_matmul_tn([], [], 0, 2, 3, &dw, 2)
        XCTAssertEqual(dw, [Float](repeating: 0, count: 6))
    }
}
