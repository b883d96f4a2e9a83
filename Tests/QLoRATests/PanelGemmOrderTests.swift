import CQLoRAKernels
import XCTest
@testable import QLoRA

/// The large-M panel GEMM (panel_gemm.c: the fused 4-bit linear at M >= 64, cq_dense_linear /
/// cq_matmul_nt at M >= 8) on every ISA path this CPU has, on shapes that exercise each edge of
/// the driver: x panels whole, half (M % 32 <= 16) and padded; weight tiles and panels partial
/// (N not a multiple of 12 or 96, several panels per thread); K tails (K % 256 = 1, 44, 64); the
/// LoRA block; bias and no bias. Checked three ways: against a double-precision loop (within f32
/// rounding), bit for bit against a scalar model of the documented summation order (per output,
/// one fma chain from zero per 256-wide K block — and for the LoRA block over scaling·xa — added in
/// turn to a zero accumulator, then + bias or + 0), and 1 vs 2 threads bit for bit. The model pins
/// the epilogue (16 x 16 register transposes on AVX-512), the x packing and the prefetching to the
/// same bits as the plain loops they replaced.
final class PanelGemmOrderTests: XCTestCase {
    static let panelK = 256 // CQ_PANEL_K

    struct Problem {
        let M, N, K, r: Int
        let x, w, xa, B: [Float]
        let bias: [Float]?
        let scaling: Float = 0.75
    }

    /// y in the driver's order; `fused`: each step an fma (AVX2, AVX-512), else a rounded product
    /// then a rounded sum (the portable kernel where the target has no fma).
    func model(_ p: Problem, fused: Bool) -> [Float] {
        var y = [Float](repeating: 0, count: p.M * p.N)
        let xs = p.xa.map { p.scaling * $0 } // packed once: scaling·xa, one f32 product
        for m in 0..<p.M {
            for n in 0..<p.N {
                var acc: Float = 0
                var k0 = 0
                while k0 < p.K {
                    var chain: Float = 0
                    for k in k0..<min(p.K, k0 + Self.panelK) {
                        let a = p.x[m * p.K + k], b = p.w[n * p.K + k]
                        chain = fused ? chain.addingProduct(a, b) : chain + a * b
                    }
                    acc = acc + chain
                    k0 += Self.panelK
                }
                if p.r > 0 {
                    var chain: Float = 0
                    for j in 0..<p.r {
                        let a = xs[m * p.r + j], b = p.B[n * p.r + j]
                        chain = fused ? chain.addingProduct(a, b) : chain + a * b
                    }
                    acc = acc + chain
                }
                y[m * p.N + n] = acc + (p.bias?[n] ?? 0)
            }
        }
        return y
    }

    func assertCloseToExact(_ y: [Float], _ p: Problem, _ what: String) {
        var bad = 0
        for m in 0..<p.M {
            for n in 0..<p.N {
                var exact = Double(p.bias?[n] ?? 0), scale = abs(exact)
                for k in 0..<p.K {
                    let t = Double(p.x[m * p.K + k]) * Double(p.w[n * p.K + k])
                    exact += t; scale += abs(t)
                }
                for j in 0..<p.r {
                    let t = Double(p.scaling * p.xa[m * p.r + j]) * Double(p.B[n * p.r + j])
                    exact += t; scale += abs(t)
                }
                let got = Double(y[m * p.N + n])
                if !(abs(got - exact) <= 1e-5 * scale + 1e-30) {
                    if bad < 3 { XCTFail("\(what) [\(m), \(n)]: \(got) vs \(exact)") }
                    bad += 1
                }
            }
        }
    }

    /// Runs the kernel for 1 and 2 threads, requires the same bits, checks against the double
    /// loop and the order model (the portable path may or may not contract to fma: either model).
    func check(_ p: Problem, isa: cq_isa, _ what: String, _ run: (Int32) -> [Float]) {
        let one = run(1)
        assertBitIdentical(run(2), one, "\(what): 1 vs 2 threads")
        assertCloseToExact(one, p, what)
        let fusedModel = model(p, fused: true)
        if isa == CQ_ISA_PORTABLE, one.map(\.bitPattern) != fusedModel.map(\.bitPattern) {
            assertBitIdentical(one, model(p, fused: false), "\(what): the summation order (mul + add)")
        } else {
            assertBitIdentical(one, fusedModel, "\(what): the summation order (fma)")
        }
    }

    func problem(M: Int, N: Int, K: Int, r: Int, bias: Bool, w: [Float]? = nil, seed: UInt64) -> Problem {
        var rng = SeededRandom(seed: seed)
        return Problem(M: M, N: N, K: K, r: r, x: rng.floats(M * K), w: w ?? rng.floats(N * K), xa: rng.floats(M * r),
                       B: rng.floats(N * r), bias: bias ? rng.floats(N) : nil)
    }


    func withScratch<T>(_ bytes: Int, _ body: (UnsafeMutableRawPointer) -> T) -> T {
        let s = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { s.deallocate() }
        return body(s)
    }

    /// The fused 4-bit linear (xa given) against the model on the decoded weight.
    func testFusedFourBitPanelGemmFollowsTheDocumentedOrder() throws {
        // (M, N, K, r, bias): half panel + K tail 1; several panels per thread + half panel of 4;
        // whole panels only (x packed by transposes) + SmolLM2's K; M % 32 = 16 (a whole half
        // panel); padded last panel (M % 32 = 17 > 16); one tile exactly.
        let shapes = [(65, 97, 257, 3, true), (100, 200, 300, 16, true), (256, 193, 576, 16, false), (80, 50, 40, 5, true),
                      (113, 30, 64, 0, true), (64, 12, 256, 0, false)]
        var seed: UInt64 = 900
        try forEachISA { isa, name in
            for (M, N, K, r, bias) in shapes {
                seed += 1
                let q = try randomQuantizedWeight(rows: N, cols: K, blockSize: 64, double: seed % 2 == 0, seed: seed)
                let p = problem(M: M, N: N, K: K, r: r, bias: bias, w: q.dequantize(threads: 1).scalars, seed: seed)
                let what = "\(name) fused 4-bit \(M)x\(N)x\(K) r \(r) bias \(bias)"
                check(p, isa: isa, what) { threads in
                    var y = [Float](repeating: .nan, count: M * N)
                    withScratch(Int(cq_fused_linear_scratch_bytes(Int64(M), Int64(N), Int64(K), Int32(r), threads))) { s in
                        q.withKernelView { view in
                            _ = cq_fused_linear_given_xa(p.x, Int64(M), view, r > 0 ? p.xa : nil, r > 0 ? p.B : nil, Int32(r), p.scaling,
                                                         p.bias, &y, s, threads, 0)
                        }
                    }
                    return y
                }
            }
        }
    }

    /// The same driver on an f32 weight (cached / dense linears, the lm_head's x·Eᵀ), from M = 8.
    func testDensePanelGemmFollowsTheDocumentedOrder() {
        let shapes = [(8, 30, 70, 0, false), (33, 107, 513, 4, true), (9, 12, 300, 16, false), (256, 98, 100, 2, true)]
        var seed: UInt64 = 1900
        forEachISA { isa, name in
            for (M, N, K, r, bias) in shapes {
                seed += 1
                let p = problem(M: M, N: N, K: K, r: r, bias: bias, seed: seed)
                let what = "\(name) dense \(M)x\(N)x\(K) r \(r) bias \(bias)"
                check(p, isa: isa, what) { threads in
                    var y = [Float](repeating: .nan, count: M * N)
                    withScratch(Int(cq_dense_linear_scratch_bytes(Int64(M), Int64(N), Int64(K), Int32(r), threads))) { s in
                        if r > 0 {
                            cq_dense_linear_given_xa(p.x, Int64(M), p.w, Int64(N), Int64(K), p.xa, p.B, Int32(r), p.scaling, p.bias, &y, s, threads)
                        } else {
                            cq_dense_linear(p.x, Int64(M), p.w, Int64(N), Int64(K), nil, nil, 0, 0, p.bias, &y, s, threads)
                        }
                    }
                    return y
                }
            }
        }
    }
}
