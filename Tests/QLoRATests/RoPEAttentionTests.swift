import Foundation
import XCTest
@testable import QLoRA

/// RoPE, the fused causal GQA attention and the causal-LM loss: forward against direct
/// double-precision computations written here from the definitions (transformers' rotate_half,
/// eager attention with a materialised masked softmax, shifted cross-entropy), vjps against finite
/// differences, and 1 vs 2 threads bitwise. (The whole model against transformers is LlamaReferenceTests.)
final class RoPEAttentionTests: XCTestCase {
    /// transformers: q·cos + rotate_half(q)·sin per head, angle = p·inv_freq[i] for i and i + d/2.
    func naiveRoPE(_ x: [Float], rows: Int, seq: Int, heads: Int, d: Int, theta: Float, offset: Int) -> [Double] {
        let inv = RoPEFrequencies.inverse(headDim: d, theta: theta)
        var out = [Double](repeating: 0, count: x.count)
        for r in 0..<rows {
            let p = Double(offset + r % seq)
            for h in 0..<heads {
                let base = r * heads * d + h * d
                for i in 0..<d {
                    let angle = p * Double(inv[i % (d / 2)])
                    let rotated = i < d / 2 ? -Double(x[base + i + d / 2]) : Double(x[base + i - d / 2])
                    out[base + i] = Double(x[base + i]) * cos(angle) + rotated * sin(angle)
                }
            }
        }
        return out
    }

    func testInverseFrequenciesFollowTransformers() {
        // 1 / theta^(2i/d) in float32: i = 0 gives exactly 1.
        let inv = RoPEFrequencies.inverse(headDim: 16, theta: 10000)
        XCTAssertEqual(inv.count, 8)
        XCTAssertEqual(inv[0], 1)
        XCTAssertEqual(Double(inv[1]), 1 / pow(10000, 2.0 / 16), accuracy: 1e-7)
        // llama3: wavelengths above original/low are divided by factor, below original/high kept.
        let scaled = RoPEFrequencies.inverse(headDim: 128, theta: 500000,
                                             scaling: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        let plain = RoPEFrequencies.inverse(headDim: 128, theta: 500000)
        XCTAssertEqual(scaled[0], plain[0])                       // wavelength 2π < 2048: kept
        XCTAssertEqual(scaled[63], plain[63] / 8)                  // wavelength > 8192: divided by 8
        let mid = (0..<64).first { 2 * Float.pi / plain[$0] > 2048 && 2 * Float.pi / plain[$0] < 8192 }!
        XCTAssert(scaled[mid] < plain[mid] && scaled[mid] > plain[mid] / 8, "smoothed frequency between the two")
    }

    func testRoPEForwardMatchesRotateHalf() throws {
        var rng = SeededRandom(seed: 3)
        let (b, s, heads, d) = (2, 5, 3, 8)
        let x = rng.floats(b * s * heads * d)
        for offset in [0, 11] {
            let g = Graph()
            let xi = g.input("x", shape: [b, s, heads * d])
            g.output("y", try g.rope(xi, heads: heads, headDim: d, theta: 10000, offset: offset))
            let y = try g.compile().run(["x": try Tensor(shape: [b, s, heads * d], scalars: x)])["y"]!.scalars
            let ref = naiveRoPE(x, rows: b * s, seq: s, heads: heads, d: d, theta: 10000, offset: offset)
            assertClose(y, ref.map { Float($0) }, relative: 2e-6, "rope offset \(offset)")
        }
    }

    func testRoPEPositionsOperandEqualsOffset() throws {
        var rng = SeededRandom(seed: 4)
        let x = try Tensor(shape: [1, 3, 16], scalars: rng.floats(48))
        func run(_ positions: Bool) throws -> [Float] {
            let g = Graph()
            let xi = g.input("x", shape: [1, 3, 16])
            let p = positions ? g.input("pos", shape: [1, 3], element: .int32) : nil
            g.output("y", try g.rope(xi, heads: 2, headDim: 8, theta: 500, offset: positions ? 0 : 7, positions: p))
            return try g.compile().run(["x": x], ids: positions ? ["pos": IntTensor(shape: [1, 3], scalars: [7, 8, 9])] : [:])["y"]!.scalars
        }
        assertBitIdentical(try run(true), try run(false), "positions [7, 8, 9] vs offset 7")
    }

    func testRoPEGradient() throws {
        var rng = SeededRandom(seed: 5)
        try GradientCheck.check(inputs: [("x", try Tensor(shape: [2, 3, 8], scalars: rng.floats(48)))], "rope") { g, xs, _ in
            try g.rope(xs[0], heads: 2, headDim: 4, theta: 100, offset: 2)
        }
    }

    /// Eager attention: scores = q·k·scale, masked (key position > query position), softmax, P·v.
    func naiveAttention(q: [Float], k: [Float], v: [Float], b: Int, sq: Int, skv: Int, heads: Int, kvHeads: Int, d: Int) -> [Double] {
        var out = [Double](repeating: 0, count: q.count)
        let scale = 1 / Double(d).squareRoot(), off = skv - sq
        for bi in 0..<b {
            for h in 0..<heads {
                let kvh = h / (heads / kvHeads)
                for i in 0..<sq {
                    var scores: [Double] = []
                    for j in 0...(off + i) {
                        var s = 0.0
                        for e in 0..<d { s += Double(q[(bi * sq + i) * heads * d + h * d + e]) * Double(k[(bi * skv + j) * kvHeads * d + kvh * d + e]) }
                        scores.append(s * scale)
                    }
                    let m = scores.max()!
                    let p = scores.map { exp($0 - m) }, z = p.reduce(0, +)
                    for e in 0..<d {
                        var acc = 0.0
                        for j in 0..<p.count { acc += p[j] / z * Double(v[(bi * skv + j) * kvHeads * d + kvh * d + e]) }
                        out[(bi * sq + i) * heads * d + h * d + e] = acc
                    }
                }
            }
        }
        return out
    }

    func attention(_ q: [Float], _ k: [Float], _ v: [Float], b: Int, sq: Int, skv: Int, heads: Int, kvHeads: Int, d: Int,
                   threads: Int = 1) throws -> [Float] {
        let g = Graph()
        let qi = g.input("q", shape: [b, sq, heads * d]), ki = g.input("k", shape: [b, skv, kvHeads * d]), vi = g.input("v", shape: [b, skv, kvHeads * d])
        g.output("o", try g.attention(q: qi, k: ki, v: vi, heads: heads, kvHeads: kvHeads, headDim: d))
        let feeds = ["q": try Tensor(shape: [b, sq, heads * d], scalars: q), "k": try Tensor(shape: [b, skv, kvHeads * d], scalars: k),
                     "v": try Tensor(shape: [b, skv, kvHeads * d], scalars: v)]
        return try g.compile(CompileOptions(threads: threads)).run(feeds)["o"]!.scalars
    }

    func testAttentionMatchesEagerSoftmax() throws {
        var rng = SeededRandom(seed: 6)
        // Sequences longer than one 16-query tile and one 64-key block; GQA groups of 1, 2 and 4;
        // keys longer than queries (the KV-cache layout: queries are the last positions).
        for (b, sq, skv, heads, kvHeads, d) in [(2, 7, 7, 4, 2, 16), (1, 70, 70, 2, 2, 8), (1, 3, 90, 4, 1, 32), (1, 1, 5, 2, 1, 4)] {
            let q = rng.floats(b * sq * heads * d, scale: 2), k = rng.floats(b * skv * kvHeads * d, scale: 2), v = rng.floats(b * skv * kvHeads * d)
            let y = try attention(q, k, v, b: b, sq: sq, skv: skv, heads: heads, kvHeads: kvHeads, d: d)
            let ref = naiveAttention(q: q, k: k, v: v, b: b, sq: sq, skv: skv, heads: heads, kvHeads: kvHeads, d: d)
            assertClose(y, ref.map { Float($0) }, relative: 2e-6, "attention b\(b) sq\(sq) skv\(skv) h\(heads)/\(kvHeads) d\(d)")
        }
    }

    func testAttentionTypeRuleErrors() throws {
        let g = Graph()
        let q = g.input("q", shape: [1, 4, 12]), k = g.input("k", shape: [1, 4, 8]), short = g.input("s", shape: [1, 2, 8])
        XCTAssertThrowsError(try g.attention(q: q, k: k, v: k, heads: 3, kvHeads: 2, headDim: 4)) { e in
            XCTAssert("\(e)".contains("multiple of kv_heads"), "\(e)")
        }
        XCTAssertThrowsError(try g.attention(q: q, k: short, v: short, heads: 3, kvHeads: 2, headDim: 4))
        XCTAssertThrowsError(try g.attention(q: q, k: k, v: k, heads: 2, kvHeads: 2, headDim: 4)) { e in
            XCTAssert("\(e)".contains("q [batch, seq, heads·head_dim]"), "\(e)")
        }
    }

    func testAttentionGradient() throws {
        var rng = SeededRandom(seed: 7)
        let (b, s, heads, kvHeads, d) = (1, 5, 4, 2, 4)
        let q = try Tensor(shape: [b, s, heads * d], scalars: rng.floats(b * s * heads * d))
        let k = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        let v = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        try GradientCheck.check(inputs: [("q", q), ("k", k), ("v", v)], "attention") { g, xs, _ in
            try g.attention(q: xs[0], k: xs[1], v: xs[2], heads: heads, kvHeads: kvHeads, headDim: d)
        }
        // Keys longer than queries (cache layout) in the backward pass too.
        let k2 = try Tensor(shape: [b, 7, kvHeads * d], scalars: rng.floats(7 * kvHeads * d))
        let v2 = try Tensor(shape: [b, 7, kvHeads * d], scalars: rng.floats(7 * kvHeads * d))
        try GradientCheck.check(inputs: [("q", q), ("k", k2), ("v", v2)], "attention kv 7 > q 5") { g, xs, _ in
            try g.attention(q: xs[0], k: xs[1], v: xs[2], heads: heads, kvHeads: kvHeads, headDim: d)
        }
    }

    /// Forward and backward of rope → attention over sizes that split over threads: 1 and 2 threads bitwise.
    func testAttentionOneAndTwoThreadsBitwise() throws {
        var rng = SeededRandom(seed: 8)
        let (b, s, heads, kvHeads, d) = (2, 40, 4, 2, 16)
        let q = try Tensor(shape: [b, s, heads * d], scalars: rng.floats(b * s * heads * d))
        let k = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        let v = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        let target = try Tensor(shape: q.shape, scalars: rng.floats(q.scalars.count))
        func run(_ threads: Int) throws -> [String: Tensor] {
            let g = Graph()
            let qi = g.input("q", shape: q.shape), ki = g.input("k", shape: k.shape), vi = g.input("v", shape: v.shape)
            let rq = try g.rope(qi, heads: heads, headDim: d, theta: 10000), rk = try g.rope(ki, heads: kvHeads, headDim: d, theta: 10000)
            let o = try g.attention(q: rq, k: rk, v: vi, heads: heads, kvHeads: kvHeads, headDim: d)
            g.output("o", o)
            try g.backward(from: try g.mseLoss(o, target: g.input("t", shape: q.shape)), inputGradients: ["dq": qi, "dk": ki, "dv": vi])
            return try g.compile(CompileOptions(threads: threads)).run(["q": q, "k": k, "v": v, "t": target])
        }
        let one = try run(1), two = try run(2)
        for name in ["o", "dq", "dk", "dv"] { assertBitIdentical(one[name]!.scalars, two[name]!.scalars, "\(name): 1 vs 2 threads") }
    }

    /// transformers' loss: logits at t against the label at t + 1, -100 ignored, mean over the counted ones.
    func testCausalLMLossIsShiftedCrossEntropy() throws {
        var rng = SeededRandom(seed: 9)
        let (b, s, vocab) = (2, 4, 5)
        let logits = try Tensor(shape: [b, s, vocab], scalars: rng.floats(b * s * vocab, scale: 3))
        let labels: [Int32] = [1, 4, -100, 2, 0, 3, 3, -100]
        var total = 0.0, counted = 0
        for r in 0..<b {
            for t in 0..<(s - 1) where labels[r * s + t + 1] != -100 {
                let row = (0..<vocab).map { Double(logits.scalars[(r * s + t) * vocab + $0]) }
                let m = row.max()!
                total += m + log(row.map { exp($0 - m) }.reduce(0, +)) - row[Int(labels[r * s + t + 1])]
                counted += 1
            }
        }
        XCTAssertEqual(counted, 4)
        let g = Graph()
        let l = g.input("logits", shape: [b, s, vocab]), y = g.input("labels", shape: [b, s], element: .int32)
        g.output("loss", try g.causalLMLoss(l, labels: y))
        let loss = try g.compile().run(["logits": logits], ids: ["labels": IntTensor(shape: [b, s], scalars: labels)])["loss"]!.scalars[0]
        XCTAssertEqual(Double(loss), total / Double(counted), accuracy: 1e-6 * abs(total / Double(counted)))
        let ids = try IntTensor(shape: [b, s], scalars: labels)
        try GradientCheck.check(inputs: [("logits", logits)], ids: ["labels": ids], idShapes: ["labels": [b, s]], "causal-LM loss") { g, xs, idv in
            try g.causalLMLoss(xs[0], labels: idv["labels"]!)
        }
    }
}
