import CQLoRAKernels
import Foundation
import XCTest

/// The register-tiled attention kernels (attention_core.h) against a double-precision reference,
/// at shapes that exercise what the blocking adds: the backward's key chunks (several per
/// (batch, KV head), so dq is a sum of partials), keys longer than queries, packed rows whose
/// segments cross chunk boundaries, head_dim that is not a multiple of 16, score tiles with
/// a remainder. 1 vs 2 threads bitwise; AVX2 and AVX-512 bitwise (the tiles never change an
/// element's order of additions); accuracy bounded in RMS as well as worst case.
final class AttentionKernelTests: XCTestCase {
    struct Case { var b, sq, skv, heads, kvHeads, d: Int; var segments: [Int]? = nil }

    struct Outputs { var o, lse, dq, dk, dv: [Float] }

    /// o and dq, dk, dv of Σ dout·o in double: query i (at position skv − sq + i) over keys
    /// lo ... that position (lo = its segment's start when packed), materialised softmax.
    static func reference(_ c: Case, q: [Float], k: [Float], v: [Float], dout: [Float], positions: [Int32]?) -> (o: [Double], dq: [Double], dk: [Double], dv: [Double]) {
        let scale = Double(1 / Float(c.d).squareRoot()), group = c.heads / c.kvHeads, off = c.skv - c.sq, d = c.d
        var o = [Double](repeating: 0, count: q.count), dq = o
        var dk = [Double](repeating: 0, count: k.count), dv = dk
        for bb in 0..<c.b {
            for h in 0..<c.heads {
                let kvh = h / group
                for i in 0..<c.sq {
                    let qi = (bb * c.sq + i) * c.heads * d + h * d
                    let lo = positions.map { i - Int($0[bb * c.sq + i]) } ?? 0
                    let keys = Array(lo...(off + i))
                    let s = keys.map { j -> Double in
                        let kj = (bb * c.skv + j) * c.kvHeads * d + kvh * d
                        var t = 0.0
                        for e in 0..<d { t += Double(q[qi + e]) * Double(k[kj + e]) }
                        return t * scale
                    }
                    let mx = s.max()!, ex = s.map { Foundation.exp($0 - mx) }, sum = ex.reduce(0, +), p = ex.map { $0 / sum }
                    var dp = [Double](repeating: 0, count: keys.count)
                    for (n, j) in keys.enumerated() {
                        let vj = (bb * c.skv + j) * c.kvHeads * d + kvh * d
                        for e in 0..<d { o[qi + e] += p[n] * Double(v[vj + e]); dp[n] += Double(dout[qi + e]) * Double(v[vj + e]) }
                    }
                    let delta = zip(p, dp).reduce(0.0) { $0 + $1.0 * $1.1 }
                    for (n, j) in keys.enumerated() {
                        let kj = (bb * c.skv + j) * c.kvHeads * d + kvh * d, ds = p[n] * (dp[n] - delta) * scale
                        for e in 0..<d {
                            dq[qi + e] += ds * Double(k[kj + e])
                            dk[kj + e] += ds * Double(q[qi + e])
                            dv[kj + e] += p[n] * Double(dout[qi + e])
                        }
                    }
                }
            }
        }
        return (o, dq, dk, dv)
    }

    static func run(_ c: Case, q: [Float], k: [Float], v: [Float], dout: [Float], positions: [Int32]?, threads: Int32) -> Outputs {
        let scale = 1 / Float(c.d).squareRoot()
        var out = [Float](repeating: .nan, count: q.count), lse = [Float](repeating: .nan, count: c.b * c.heads * c.sq)
        var dq = out, dk = [Float](repeating: .nan, count: k.count), dv = dk
        let (b, sq, skv, h, kvh, d) = (Int64(c.b), Int64(c.sq), Int64(c.skv), Int64(c.heads), Int64(c.kvHeads), Int64(c.d))
        // Scratch filled with NaN: every partial the backward reads must have been written.
        var scratch = [Float](repeating: .nan, count: Int(cq_attention_grad_scratch_bytes(b, sq, skv, h, kvh, d)) / 4 + 1)
        if let positions {
            cq_attention_segmented(q, k, v, positions, &out, &lse, b, sq, h, kvh, d, scale, threads)
        } else {
            cq_attention(q, k, v, &out, &lse, b, sq, skv, h, kvh, d, scale, threads)
        }
        cq_attention_grad_segmented(q, k, v, positions, out, lse, dout, &dq, &dk, &dv, &scratch, b, sq, skv, h, kvh, d, scale, threads)
        return Outputs(o: out, lse: lse, dq: dq, dk: dk, dv: dv)
    }

    /// sqrt(Σ (x − ref)² / Σ ref²).
    static func rms(_ x: [Float], _ ref: [Double]) -> Double {
        var e = 0.0, n = 0.0
        for (a, r) in zip(x, ref) { e += (Double(a) - r) * (Double(a) - r); n += r * r }
        return (e / max(n, 1e-300)).squareRoot()
    }

    static let cases: [Case] = [
        Case(b: 1, sq: 260, skv: 260, heads: 9, kvHeads: 3, d: 64),            // SmolLM2's heads, 4 key chunks, a partial last block
        Case(b: 1, sq: 40, skv: 200, heads: 4, kvHeads: 1, d: 24),             // keys longer than queries, odd head_dim
        Case(b: 2, sq: 160, skv: 160, heads: 4, kvHeads: 2, d: 80, segments: [23, 1, 70, 50, 16]),   // packed across chunks
        Case(b: 1, sq: 97, skv: 97, heads: 2, kvHeads: 2, d: 13),              // MHA, tiny head_dim, tails everywhere
    ]

    func testTiledKernelsMatchDoubleReferenceAndAgreeAcrossThreadsAndISAs() {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        var chunked = 0
        for (n, c) in Self.cases.enumerated() {
            var rng = SeededRandom(seed: UInt64(40 + n))
            let q = rng.floats(c.b * c.sq * c.heads * c.d, scale: 2), k = rng.floats(c.b * c.skv * c.kvHeads * c.d, scale: 2)
            let v = rng.floats(c.b * c.skv * c.kvHeads * c.d), dout = rng.floats(c.b * c.sq * c.heads * c.d)
            let positions = c.segments.map { seg in (0..<c.b).flatMap { _ in seg.flatMap { (0..<$0).map(Int32.init) } } }
            if let positions { XCTAssertEqual(positions.count, c.b * c.sq) }
            if cq_attention_grad_chunks(Int64(c.b), Int64(c.kvHeads), Int64(c.skv)) > 1 { chunked += 1 }
            let ref = Self.reference(c, q: q, k: k, v: v, dout: dout, positions: positions)
            let shape = "b\(c.b) sq\(c.sq) skv\(c.skv) h\(c.heads)/\(c.kvHeads) d\(c.d)\(c.segments == nil ? "" : " packed")"
            var byISA: [String: Outputs] = [:]
            for isa in [CQ_ISA_PORTABLE, CQ_ISA_AVX2, CQ_ISA_AVX512] {
                guard cq_set_isa(isa) == isa else { continue }
                let name = String(cString: cq_isa_name(isa))
                let one = Self.run(c, q: q, k: k, v: v, dout: dout, positions: positions, threads: 1)
                let two = Self.run(c, q: q, k: k, v: v, dout: dout, positions: positions, threads: 2)
                for (x, y, what) in [(one.o, two.o, "out"), (one.lse, two.lse, "lse"), (one.dq, two.dq, "dq"), (one.dk, two.dk, "dk"), (one.dv, two.dv, "dv")] {
                    assertBitIdentical(y, x, "\(name) \(shape) \(what): 2 vs 1 threads")
                }
                for (x, r, what, worst) in [(one.o, ref.o, "out", 2e-6), (one.dq, ref.dq, "dq", 1e-5), (one.dk, ref.dk, "dk", 1e-5), (one.dv, ref.dv, "dv", 1e-5)] as [([Float], [Double], String, Float)] {
                    assertClose(x, r.map { Float($0) }, relative: worst, "\(name) \(shape) \(what)")
                    XCTAssertLessThan(Self.rms(x, r), 1e-6, "\(name) \(shape) \(what): RMS error vs double")
                }
                byISA[name] = one
            }
            if let a = byISA["avx512"], let b = byISA["avx2"] {
                for (x, y, what) in [(a.o, b.o, "out"), (a.lse, b.lse, "lse"), (a.dq, b.dq, "dq"), (a.dk, b.dk, "dk"), (a.dv, b.dv, "dv")] {
                    assertBitIdentical(y, x, "\(shape) \(what): AVX2 vs AVX-512")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(chunked, 3, "the cases must split the backward's keys into several chunks")
    }

    /// A decode step (one query over a long cache, the group's three heads in one unit) and a
    /// short prefill on a cache, against the double reference on every ISA.
    func testDecodeOverCacheMatchesDoubleReference() {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        for sq in [1, 5] {
            let c = Case(b: 1, sq: sq, skv: 300, heads: 9, kvHeads: 3, d: 64)
            var rng = SeededRandom(seed: UInt64(70 + sq))
            let q = rng.floats(c.sq * c.heads * c.d, scale: 2), k = rng.floats(c.skv * c.kvHeads * c.d, scale: 2), v = rng.floats(c.skv * c.kvHeads * c.d)
            let ref = Self.reference(c, q: q, k: k, v: v, dout: [Float](repeating: 0, count: q.count), positions: nil)
            for isa in [CQ_ISA_PORTABLE, CQ_ISA_AVX2, CQ_ISA_AVX512] {
                guard cq_set_isa(isa) == isa else { continue }
                var out = [Float](repeating: .nan, count: q.count), lse = [Float](repeating: .nan, count: c.heads * c.sq)
                // A cache of 512 rows of which the first 300 are live.
                let cap = 512
                var kc = [Float](repeating: .nan, count: cap * c.kvHeads * c.d), vc = kc
                kc.replaceSubrange(0..<k.count, with: k)
                vc.replaceSubrange(0..<v.count, with: v)
                cq_attention_cached(q, kc, vc, &out, &lse, 1, Int64(sq), Int64(c.skv), Int64(cap), Int64(c.heads), Int64(c.kvHeads), Int64(c.d),
                                    1 / Float(c.d).squareRoot(), 2)
                assertClose(out, ref.o.map { Float($0) }, relative: 2e-6, "\(String(cString: cq_isa_name(isa))) \(sq) queries over 300 keys")
            }
        }
    }
}
