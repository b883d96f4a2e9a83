import CQLoRAKernels
import Foundation
import XCTest

/// The vectorized pointwise kernels (fast_exp.h, pointwise_core.h: exp, SiLU, its gradient, the
/// SwiGLU gate, cross-entropy and its gradient) and the blocked attention kernels against
/// double-precision references at odd shapes, 1 vs 2 threads bitwise, on every ISA this CPU has.
final class PointwiseKernelTests: XCTestCase {
    /// Runs body once per ISA this CPU has (avx512, avx2, portable), restoring the detected level.
    func forEachISA(_ body: (String) throws -> Void) rethrows {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        var seen = Set<UInt32>()
        for isa in [CQ_ISA_PORTABLE, CQ_ISA_AVX2, CQ_ISA_AVX512] {
            let got = cq_set_isa(isa)
            guard seen.insert(got.rawValue).inserted else { continue }
            try body(String(cString: cq_isa_name(got)))
        }
    }

    /// Distance in units in the last place between two finite floats of the same sign region.
    static func ulps(_ a: Float, _ b: Float) -> Int64 {
        func ordered(_ x: Float) -> Int64 { let i = Int64(Int32(bitPattern: x.bitPattern)); return i < 0 ? Int64(Int32.min) - i : i }
        return abs(ordered(a) - ordered(b))
    }

    /// Every 97th float in [−87.3, 88.7] (about 20 million): within 1 ulp of the correctly rounded
    /// e^x (Foundation's double exp rounded to float); the edges and specials exactly.
    func testExpWithinOneUlpOfDoubleReference() {
        var xs: [Float] = []
        var x: Float = -87.3
        while x < 88.7 { xs.append(x); x = Float(bitPattern: x < 0 ? x.bitPattern &- 97 : x.bitPattern &+ 97); if x == 0 { x = Float.leastNonzeroMagnitude } }
        var out = [Float](repeating: 0, count: xs.count)
        cq_exp(xs, &out, Int64(xs.count), 2)
        var worst: Int64 = 0, at: Float = 0
        for i in xs.indices {
            let d = Self.ulps(out[i], Float(Foundation.exp(Double(xs[i]))))
            if d > worst { worst = d; at = xs[i] }
        }
        XCTAssertLessThanOrEqual(worst, 1, "worst \(worst) ulp at x = \(at)")
        let specials: [Float] = [-.infinity, -200, -104, 0, -0.0, 89, 1000, .infinity]
        var got = [Float](repeating: 1, count: specials.count)
        cq_exp(specials, &got, Int64(specials.count), 1)
        XCTAssertEqual(got, [0, 0, 0, 1, 1, .infinity, .infinity, .infinity])
        var nan: [Float] = [.nan]
        cq_exp(nan, &nan, 1, 1)
        XCTAssertTrue(nan[0].isNaN)
        // The largest float with a finite e^x and the smallest positive one (a subnormal).
        var edge: [Float] = [88.7228317, -103.2789]
        cq_exp(edge, &edge, 2, 1)
        XCTAssertEqual(edge[0], Float(Foundation.exp(88.7228317 as Double)))
        XCTAssertTrue(edge[1] > 0 && edge[1] < Float.leastNormalMagnitude, "\(edge[1])")
    }

    typealias Unary = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int64, Int32) -> Void

    /// SiLU, the SwiGLU gate and SiLU's gradient: a few ulp of the double formulas at odd sizes
    /// (one element, a vector tail, a split over threads), 1 vs 2 threads bitwise, and the same
    /// bits on every ISA (contraction is off in the pointwise kernels).
    func testSiluFamilyMatchesDoubleReferenceOnEveryISA() {
        for n in [1, 17, 1003, 40_009] {
            var rng = SeededRandom(seed: UInt64(n))
            var a = rng.floats(n, scale: 12), b = rng.floats(n, scale: 3)
            a[0] = -95; if n > 2 { a[1] = 95; a[2] = 0 }
            func sig(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
            let silu = a.map { Double($0) * sig(Double($0)) }
            let gate = zip(a, b).map { Double($0) * sig(Double($0)) * Double($1) }
            let grad = zip(a, b).map { (v, g) -> Double in let s = sig(Double(v)); return Double(g) * s * (1 + Double(v) * (1 - s)) }
            var portable: [[Float]] = []
            forEachISA { isa in
                var results: [[Float]] = []
                for threads: Int32 in [1, 2] {
                    var s = [Float](repeating: 0, count: n), m = s, g = s
                    cq_silu(a, &s, Int64(n), threads)
                    cq_silu_mul(a, b, &m, Int64(n), threads)
                    cq_activation_grad(0, a, b, &g, Int64(n), threads)
                    results += [s, m, g]
                }
                for (k, name) in ["silu", "silu_mul", "silu_grad"].enumerated() {
                    assertBitIdentical(results[k + 3], results[k], "\(isa) \(name) n=\(n): 2 vs 1 threads")
                }
                // silu' = σ·(1 + x·(1 − σ)) loses up to ulp(1)·|x·g| to the cancellation in 1 − σ
                // in any float evaluation (libm's expf too), so its bound adds that term.
                for (got, want, slack, name) in [(results[0], silu, 0.0, "silu"), (results[1], gate, 0.0, "silu_mul"),
                                                  (results[2], grad, 2.0, "silu_grad")] {
                    for i in 0..<n {
                        let err = abs(Double(got[i]) - want[i])
                        let tol = 4 * Double(Float.ulpOfOne) * (abs(want[i]) + slack * abs(Double(a[i]) * Double(b[i]))) + 1e-37
                        if err > tol { XCTFail("\(isa) \(name)[\(i)] (x = \(a[i])): \(got[i]) vs \(want[i])"); break }
                    }
                }
                if portable.isEmpty { portable = results } else {
                    for k in 0..<3 { assertBitIdentical(results[k], portable[k], "\(isa) vs portable, kernel \(k), n=\(n)") }
                }
            }
        }
    }

    /// Cross-entropy (torch's mean over labelled rows, -100 ignored) and its gradient against
    /// double math at odd widths, including rows of large logits; 1 vs 2 threads and every ISA bitwise.
    func testCrossEntropyMatchesDoubleReferenceOnEveryISA() {
        for (rows, n) in [(1, 5), (3, 1001), (37, 4099)] {
            var rng = SeededRandom(seed: UInt64(rows * 7919 + n))
            var logits = rng.floats(rows * n, scale: 8)
            if rows > 2 { for j in 0..<n { logits[2 * n + j] += 60 } }   // a row far from zero
            let labels: [Int32] = (0..<rows).map { $0 % 5 == 1 ? -100 : Int32((($0 * 31) + 7) % n) }
            var total = 0.0, counted = 0
            var wantGrad = [Double](repeating: 0, count: rows * n)
            let g: Float = 0.75
            let labelledRows = labels.filter { $0 != -100 }.count
            for i in 0..<rows where labels[i] != -100 {
                let row = (0..<n).map { Double(logits[i * n + $0]) }
                let mx = row.max()!, lse = Foundation.log(row.map { Foundation.exp($0 - mx) }.reduce(0, +)) + mx
                total += lse - row[Int(labels[i])]; counted += 1
                for j in 0..<n { wantGrad[i * n + j] = (Foundation.exp(row[j] - lse) - (j == Int(labels[i]) ? 1 : 0)) * Double(g) / Double(labelledRows) }
            }
            let wantLoss = total / Double(counted)
            var reference: (Float, [Float])?
            forEachISA { isa in
                var runs: [(Float, [Float])] = []
                for threads: Int32 in [1, 2] {
                    var loss: Float = 0, grad = [Float](repeating: .nan, count: rows * n)
                    XCTAssertEqual(cq_cross_entropy(logits, labels, Int64(rows), Int64(n), &loss, threads), -1)
                    cq_cross_entropy_grad(logits, labels, [g], &grad, Int64(rows), Int64(n), threads)
                    runs.append((loss, grad))
                }
                XCTAssertEqual(runs[0].0.bitPattern, runs[1].0.bitPattern, "\(isa) loss \(rows)x\(n): 1 vs 2 threads")
                assertBitIdentical(runs[1].1, runs[0].1, "\(isa) grad \(rows)x\(n): 2 vs 1 threads")
                XCTAssertEqual(Double(runs[0].0), wantLoss, accuracy: 1e-6 * max(1, abs(wantLoss)), "\(isa) loss \(rows)x\(n)")
                assertClose(runs[0].1, wantGrad.map { Float($0) }, relative: 1e-5, "\(isa) grad \(rows)x\(n)")
                if let r = reference {
                    XCTAssertEqual(runs[0].0.bitPattern, r.0.bitPattern, "\(isa) loss vs portable")
                    assertBitIdentical(runs[0].1, r.1, "\(isa) grad vs portable")
                } else { reference = runs[0] }
            }
        }
        // A label outside the classes names its row.
        var loss: Float = 0
        XCTAssertEqual(cq_cross_entropy([1, 2, 3, 4], [0, 2], 2, 2, &loss, 2), 1)
    }

    /// The blocked attention forward and backward against double math (GQA group of 3, a head_dim
    /// that is not a multiple of 4, key blocks with a partial tail, keys longer than queries as in
    /// a KV cache), 1 vs 2 threads bitwise on every ISA.
    func testAttentionMatchesDoubleReferenceOnEveryISA() {
        for (b, sq, skv, heads, kvHeads, d) in [(1, 37, 37, 9, 3, 13), (2, 20, 51, 6, 2, 64), (1, 1, 70, 4, 1, 32)] {
            var rng = SeededRandom(seed: UInt64(sq * 100 + d))
            let q = rng.floats(b * sq * heads * d, scale: 2), k = rng.floats(b * skv * kvHeads * d, scale: 2)
            let v = rng.floats(b * skv * kvHeads * d), dout = rng.floats(b * sq * heads * d)
            let scale = 1 / Float(d).squareRoot(), group = heads / kvHeads, off = skv - sq
            // Double reference: o, and dq, dk, dv of Σ dout·o.
            var o = [Double](repeating: 0, count: q.count), dq = o
            var dk = [Double](repeating: 0, count: k.count), dv = dk
            for bb in 0..<b {
                for h in 0..<heads {
                    let kvh = h / group
                    for i in 0..<sq {
                        let qi = (bb * sq + i) * heads * d + h * d
                        let keys = 0...(off + i)
                        let s = keys.map { j -> Double in
                            let kj = (bb * skv + j) * kvHeads * d + kvh * d
                            return (0..<d).reduce(0.0) { $0 + Double(q[qi + $1]) * Double(k[kj + $1]) } * Double(scale)
                        }
                        let mx = s.max()!, e = s.map { Foundation.exp($0 - mx) }, sum = e.reduce(0, +), p = e.map { $0 / sum }
                        var dp = [Double](repeating: 0, count: keys.count)
                        for j in keys {
                            let vj = (bb * skv + j) * kvHeads * d + kvh * d
                            for x in 0..<d { o[qi + x] += p[j] * Double(v[vj + x]); dp[j] += Double(dout[qi + x]) * Double(v[vj + x]) }
                        }
                        let delta = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
                        for j in keys {
                            let kj = (bb * skv + j) * kvHeads * d + kvh * d, ds = p[j] * (dp[j] - delta) * Double(scale)
                            for x in 0..<d {
                                dq[qi + x] += ds * Double(k[kj + x])
                                dk[kj + x] += ds * Double(q[qi + x])
                                dv[kj + x] += p[j] * Double(dout[qi + x])
                            }
                        }
                    }
                }
            }
            let shape = "b\(b) sq\(sq) skv\(skv) h\(heads)/\(kvHeads) d\(d)"
            forEachISA { isa in
                var runs: [[[Float]]] = []
                for threads: Int32 in [1, 2] {
                    var out = [Float](repeating: .nan, count: q.count), lse = [Float](repeating: .nan, count: b * heads * sq)
                    cq_attention(q, k, v, &out, &lse, Int64(b), Int64(sq), Int64(skv), Int64(heads), Int64(kvHeads), Int64(d), scale, threads)
                    var gq = [Float](repeating: .nan, count: q.count), gk = [Float](repeating: .nan, count: k.count), gv = gk
                    var scratch = [UInt8](repeating: 0, count: Int(cq_attention_grad_scratch_bytes(Int64(b), Int64(sq), Int64(skv), Int64(heads), Int64(kvHeads), Int64(d))))
                    cq_attention_grad(q, k, v, out, lse, dout, &gq, &gk, &gv, &scratch, Int64(b), Int64(sq), Int64(skv), Int64(heads),
                                      Int64(kvHeads), Int64(d), scale, threads)
                    runs.append([out, lse, gq, gk, gv])
                }
                for (n, name) in ["out", "lse", "dq", "dk", "dv"].enumerated() {
                    assertBitIdentical(runs[1][n], runs[0][n], "\(isa) \(shape) \(name): 2 vs 1 threads")
                }
                assertClose(runs[0][0], o.map { Float($0) }, relative: 2e-6, "\(isa) \(shape) out")
                assertClose(runs[0][2], dq.map { Float($0) }, relative: 1e-5, "\(isa) \(shape) dq")
                assertClose(runs[0][3], dk.map { Float($0) }, relative: 1e-5, "\(isa) \(shape) dk")
                assertClose(runs[0][4], dv.map { Float($0) }, relative: 1e-5, "\(isa) \(shape) dv")
            }
        }
    }
}
