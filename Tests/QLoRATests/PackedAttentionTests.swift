import CQLoRAKernels
import Foundation
import XCTest
@testable import QLoRA

/// Packed rows (several examples back to back, position ids restarting at each): the segmented
/// attention against eager attention run on each example separately (forward and backward),
/// finite differences, 1 vs 2 threads bitwise, bad position ids; the Llama model on packed rows
/// against each example alone (the tiny interop Llama and SmolLM2), and packed training batches
/// against padded ones (same loss and LoRA gradients).
final class PackedAttentionTests: XCTestCase {
    /// Position ids of a row cut into segments of `lengths` (each restarting at 0).
    static func positions(_ lengths: [Int]) -> [Int32] { lengths.flatMap { (0..<$0).map(Int32.init) } }

    /// Rows [b, s, width] → the [1, len, width] slice of row r at `start`.
    static func slice(_ x: [Float], row: Int, seq: Int, width: Int, start: Int, length: Int) -> [Float] {
        Array(x[((row * seq + start) * width)..<((row * seq + start + length) * width)])
    }

    struct AttentionRun { var o: [Float], dq: [Float], dk: [Float], dv: [Float] }

    /// Attention (segmented when `positions` is given) and the gradients of mse(o, target).
    func runAttention(q: [Float], k: [Float], v: [Float], target: [Float], b: Int, s: Int, heads: Int, kvHeads: Int, d: Int,
                      positions: [Int32]?, threads: Int = 1) throws -> AttentionRun {
        let g = Graph()
        let qi = g.input("q", shape: [b, s, heads * d]), ki = g.input("k", shape: [b, s, kvHeads * d]), vi = g.input("v", shape: [b, s, kvHeads * d])
        let p = positions.map { _ in g.input("position_ids", shape: [b, s], element: .int32) }
        let o = try g.attention(q: qi, k: ki, v: vi, heads: heads, kvHeads: kvHeads, headDim: d, positionIds: p)
        g.output("o", o)
        try g.backward(from: try g.mseLoss(o, target: g.input("t", shape: [b, s, heads * d])), inputGradients: ["dq": qi, "dk": ki, "dv": vi])
        let feeds = ["q": try Tensor(shape: [b, s, heads * d], scalars: q), "k": try Tensor(shape: [b, s, kvHeads * d], scalars: k),
                     "v": try Tensor(shape: [b, s, kvHeads * d], scalars: v), "t": try Tensor(shape: [b, s, heads * d], scalars: target)]
        let ids = try positions.map { ["position_ids": try IntTensor(shape: [b, s], scalars: $0)] } ?? [:]
        let r = try g.compile(CompileOptions(threads: threads)).run(feeds, ids: ids)
        return AttentionRun(o: r["o"]!.scalars, dq: r["dq"]!.scalars, dk: r["dk"]!.scalars, dv: r["dv"]!.scalars)
    }

    /// Each segment of a packed row equals plain causal attention on that segment alone, forward
    /// and backward (the mse gradient rescaled from the segment's element count to the row's).
    /// Rows longer than a 16-query tile and a 64-key block, segments crossing tiles and blocks,
    /// one-token segments (as padding), GQA.
    func testSegmentsEqualEachExampleAlone() throws {
        var rng = SeededRandom(seed: 21)
        let (b, s, heads, kvHeads, d) = (2, 90, 4, 2, 16)
        let rows = [[5, 17, 12, 1, 40, 6, 1, 1, 7], [70, 3, 17]]
        let q = rng.floats(b * s * heads * d, scale: 2), k = rng.floats(b * s * kvHeads * d, scale: 2), v = rng.floats(b * s * kvHeads * d)
        let t = rng.floats(b * s * heads * d)
        let packed = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d,
                                      positions: rows.flatMap(Self.positions))
        for (r, lengths) in rows.enumerated() {
            var start = 0
            for n in lengths {
                func cut(_ x: [Float], _ w: Int) -> [Float] { Self.slice(x, row: r, seq: s, width: w, start: start, length: n) }
                let alone = try runAttention(q: cut(q, heads * d), k: cut(k, kvHeads * d), v: cut(v, kvHeads * d), target: cut(t, heads * d),
                                             b: 1, s: n, heads: heads, kvHeads: kvHeads, d: d, positions: nil)
                let rescale = Float(n * heads * d) / Float(b * s * heads * d)
                let what = "row \(r) segment at \(start) (\(n) tokens)"
                assertClose(cut(packed.o, heads * d), alone.o, relative: 1e-6, "\(what): out")
                assertClose(cut(packed.dq, heads * d), alone.dq.map { $0 * rescale }, relative: 1e-5, "\(what): dq")
                assertClose(cut(packed.dk, kvHeads * d), alone.dk.map { $0 * rescale }, relative: 1e-5, "\(what): dk")
                assertClose(cut(packed.dv, kvHeads * d), alone.dv.map { $0 * rescale }, relative: 1e-5, "\(what): dv")
                start += n
            }
        }
        // Position ids 0, 1, ..., s-1 (one segment) are plain causal attention, bit for bit.
        let plain = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d, positions: nil)
        let whole = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d,
                                     positions: Self.positions([s]) + Self.positions([s]))
        for (x, y, name) in [(plain.o, whole.o, "o"), (plain.dq, whole.dq, "dq"), (plain.dk, whole.dk, "dk"), (plain.dv, whole.dv, "dv")] {
            assertBitIdentical(y, x, "one segment per row vs plain causal: \(name)")
        }
    }

    func testSegmentedAttentionGradientMatchesFiniteDifferences() throws {
        var rng = SeededRandom(seed: 22)
        let (b, s, heads, kvHeads, d) = (2, 6, 4, 2, 4)
        let q = try Tensor(shape: [b, s, heads * d], scalars: rng.floats(b * s * heads * d))
        let k = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        let v = try Tensor(shape: [b, s, kvHeads * d], scalars: rng.floats(b * s * kvHeads * d))
        let positions = try IntTensor(shape: [b, s], scalars: Self.positions([3, 2, 1]) + Self.positions([1, 5]))
        try GradientCheck.check(inputs: [("q", q), ("k", k), ("v", v)], ids: ["position_ids": positions], idShapes: ["position_ids": [b, s]],
                                "segmented attention") { g, xs, ids in
            try g.attention(q: xs[0], k: xs[1], v: xs[2], heads: heads, kvHeads: kvHeads, headDim: d, positionIds: ids["position_ids"]!)
        }
    }

    func testSegmentedAttentionOneAndTwoThreadsBitwise() throws {
        var rng = SeededRandom(seed: 23)
        let (b, s, heads, kvHeads, d) = (2, 80, 4, 2, 32)
        let q = rng.floats(b * s * heads * d), k = rng.floats(b * s * kvHeads * d), v = rng.floats(b * s * kvHeads * d), t = rng.floats(b * s * heads * d)
        let positions = Self.positions([30, 20, 29, 1]) + Self.positions([9, 71])
        let one = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d, positions: positions, threads: 1)
        let two = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d, positions: positions, threads: 2)
        for (x, y, name) in [(one.o, two.o, "o"), (one.dq, two.dq, "dq"), (one.dk, two.dk, "dk"), (one.dv, two.dv, "dv")] {
            assertBitIdentical(x, y, "\(name): 1 vs 2 threads")
        }
    }

    func testBadPositionIdsAreErrors() throws {
        let (s, d) = (4, 4)
        for (bad, at) in [([0, 2, 3, 4], "position_ids[0, 1] is 2"), ([1, 2, 3, 4], "position_ids[0, 0] is 1"), ([0, 1, -1, 0], "position_ids[0, 2] is -1")] {
            XCTAssertThrowsError(try runAttention(q: .init(repeating: 0.1, count: s * d), k: .init(repeating: 0.1, count: s * d),
                                                  v: .init(repeating: 0.1, count: s * d), target: .init(repeating: 0, count: s * d),
                                                  b: 1, s: s, heads: 1, kvHeads: 1, d: d, positions: bad.map(Int32.init))) { e in
                XCTAssert("\(e)".contains(at), "\(e)")
            }
        }
        let g = Graph()
        let q = g.input("q", shape: [1, 4, 8]), k = g.input("k", shape: [1, 6, 8]), p = g.input("p", shape: [1, 4], element: .int32)
        XCTAssertThrowsError(try g.attention(q: q, k: k, v: k, heads: 2, kvHeads: 2, headDim: 4, positionIds: p)) { e in
            XCTAssert("\(e)".contains("as many keys as queries"), "\(e)")
        }
        XCTAssertThrowsError(try g.attention(q: q, k: q, v: q, heads: 2, kvHeads: 2, headDim: 4, positionIds: g.input("p3", shape: [1, 3], element: .int32))) { e in
            XCTAssert("\(e)".contains("position_ids"), "\(e)")
        }
    }

    /// Eager attention in double precision: query i (at position skv − sq + i) over keys
    /// lo...that position, lo = i − positions[i] (packed) or 0, with a materialised softmax.
    static func eager(q: [Float], k: [Float], v: [Float], b: Int, sq: Int, skv: Int, heads: Int, kvHeads: Int, d: Int,
                      positions: [Int32]?) -> [Float] {
        var out = [Float](repeating: 0, count: q.count)
        let scale = 1 / Double(d).squareRoot(), off = skv - sq
        for bi in 0..<b {
            for h in 0..<heads {
                let kvh = h / (heads / kvHeads)
                for i in 0..<sq {
                    let lo = positions.map { i - Int($0[bi * sq + i]) } ?? 0
                    let keys = Array(lo...(off + i))
                    let scores = keys.map { j in
                        (0..<d).reduce(0.0) { $0 + Double(q[(bi * sq + i) * heads * d + h * d + $1]) * Double(k[(bi * skv + j) * kvHeads * d + kvh * d + $1]) } * scale
                    }
                    let m = scores.max()!
                    let p = scores.map { exp($0 - m) }, z = p.reduce(0, +)
                    for e in 0..<d {
                        out[(bi * sq + i) * heads * d + h * d + e] =
                            Float(zip(keys, p).reduce(0.0) { $0 + $1.1 / z * Double(v[(bi * skv + $1.0) * kvHeads * d + kvh * d + e]) })
                    }
                }
            }
        }
        return out
    }

    /// Every ISA this CPU has (the AVX-512, AVX2 and portable attention kernels): forward against
    /// eager attention (plain, packed, and keys longer than queries as in a KV cache), the
    /// backward against the portable kernel's (itself checked against finite differences and
    /// each example alone above), 1 vs 2 threads bitwise.
    func testEveryISAMatchesEagerAndPortable() throws {
        var rng = SeededRandom(seed: 26)
        let (b, s, heads, kvHeads, d) = (2, 70, 4, 2, 24)
        let q = rng.floats(b * s * heads * d, scale: 2), k = rng.floats(b * s * kvHeads * d, scale: 2), v = rng.floats(b * s * kvHeads * d)
        let t = rng.floats(b * s * heads * d)
        let packed = Self.positions([20, 1, 33, 16]) + Self.positions([3, 67])
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        var reference: [String: AttentionRun] = [:]
        for isa in [CQ_ISA_PORTABLE, CQ_ISA_AVX2, CQ_ISA_AVX512] {
            let got = cq_set_isa(isa)
            guard got == isa else { continue }
            let name = String(cString: cq_isa_name(got))
            for (label, positions) in [("plain", nil), ("packed", packed)] as [(String, [Int32]?)] {
                let one = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d, positions: positions)
                let two = try runAttention(q: q, k: k, v: v, target: t, b: b, s: s, heads: heads, kvHeads: kvHeads, d: d, positions: positions, threads: 2)
                assertClose(one.o, Self.eager(q: q, k: k, v: v, b: b, sq: s, skv: s, heads: heads, kvHeads: kvHeads, d: d, positions: positions),
                            relative: 2e-6, "\(name) \(label): out vs eager")
                if let r = reference[label] {
                    assertClose(one.dq, r.dq, relative: 1e-5, "\(name) \(label): dq vs portable")
                    assertClose(one.dk, r.dk, relative: 1e-5, "\(name) \(label): dk vs portable")
                    assertClose(one.dv, r.dv, relative: 1e-5, "\(name) \(label): dv vs portable")
                } else {
                    reference[label] = one
                }
                for (x, y, n) in [(one.o, two.o, "o"), (one.dq, two.dq, "dq"), (one.dk, two.dk, "dk"), (one.dv, two.dv, "dv")] {
                    assertBitIdentical(x, y, "\(name) \(label) \(n): 1 vs 2 threads")
                }
            }
            // One query and three queries over 90 keys (a decode step and a short prefill on a cache).
            for sq in [1, 3] {
                let kq = rng.floats(sq * heads * d, scale: 2), kk = rng.floats(90 * kvHeads * d, scale: 2), kv = rng.floats(90 * kvHeads * d)
                let g = Graph()
                let qi = g.input("q", shape: [1, sq, heads * d]), ki = g.input("k", shape: [1, 90, kvHeads * d]), vi = g.input("v", shape: [1, 90, kvHeads * d])
                g.output("o", try g.attention(q: qi, k: ki, v: vi, heads: heads, kvHeads: kvHeads, headDim: d))
                let o = try g.compile().run(["q": try Tensor(shape: [1, sq, heads * d], scalars: kq), "k": try Tensor(shape: [1, 90, kvHeads * d], scalars: kk),
                                             "v": try Tensor(shape: [1, 90, kvHeads * d], scalars: kv)])["o"]!.scalars
                assertClose(o, Self.eager(q: kq, k: kk, v: kv, b: 1, sq: sq, skv: 90, heads: heads, kvHeads: kvHeads, d: d, positions: nil),
                            relative: 2e-6, "\(name): \(sq) queries over 90 keys vs eager")
            }
        }
        XCTAssertEqual(reference.count, 2)
    }

    // MARK: - The Llama model on packed rows

    static func tinyModel() throws -> LlamaModel {
        try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
    }

    /// Logits [1, n, vocab] of the examples packed into one row of `seq` tokens (the rest padding
    /// `pad`, each its own one-token segment), cut back into one array per example.
    static func packedLogits(_ model: LlamaModel, _ examples: [[Int32]], seq: Int, pad: Int32 = 0) throws -> [[Float]] {
        let used = examples.map(\.count).reduce(0, +)
        let ids = examples.flatMap { $0 } + [Int32](repeating: pad, count: seq - used)
        let positions = Self.positions(examples.map(\.count) + [Int](repeating: 1, count: seq - used))
        let g = Graph()
        let i = g.input("input_ids", shape: [1, seq], element: .int32), p = g.input("position_ids", shape: [1, seq], element: .int32)
        g.output("logits", try model.record(inputIds: i, positionIds: p).logits)
        let logits = try g.compile().run([:], ids: ["input_ids": IntTensor(shape: [1, seq], scalars: ids),
                                                    "position_ids": IntTensor(shape: [1, seq], scalars: positions)])["logits"]!.scalars
        let vocab = model.config.vocabSize
        var start = 0
        return examples.map { e in
            defer { start += e.count }
            return Array(logits[(start * vocab)..<((start + e.count) * vocab)])
        }
    }

    func assertPackedEqualsAlone(_ model: LlamaModel, _ examples: [[Int32]], seq: Int, _ what: String) throws {
        let packed = try Self.packedLogits(model, examples, seq: seq)
        for (n, e) in examples.enumerated() {
            let alone = try model.logits(IntTensor(shape: [1, e.count], scalars: e)).scalars
            assertClose(packed[n], alone, relative: 1e-5, "\(what): example \(n) (\(e.count) tokens) packed vs alone")
        }
    }

    func testTinyLlamaPackedLogitsEqualEachExampleAlone() throws {
        var rng = SeededRandom(seed: 24)
        let vocab = UInt64(try Self.tinyModel().config.vocabSize)
        let examples = [5, 9, 3, 1, 4].map { n in (0..<n).map { _ in Int32(rng.next() % vocab) } }
        try assertPackedEqualsAlone(try Self.tinyModel(), examples, seq: 25, "tiny Llama")
    }

    func testSmolLM2PackedLogitsEqualEachExampleAlone() throws {
        let file = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: file.path) else { throw XCTSkip("\(file.path) is absent: run `make model`") }
        let model = try LlamaModel.load(file)
        let tokenizer = try BPETokenizer.load(path: file.path)
        let examples = ["The capital of France is", "1, 2, 3, 4, 5, 6,", "Hello! How are you today? I am"].map { text in
            tokenizer.encode(text).map(Int32.init)
        }
        try assertPackedEqualsAlone(model, examples, seq: examples.map(\.count).reduce(0, +) + 2, "SmolLM2")
    }

    // MARK: - Packed training batches

    /// Examples with prompt-masked labels (the first tokens -100).
    static func examples(vocab: Int) -> [TrainingExample] {
        var rng = SeededRandom(seed: 25)
        return [(6, 2), (9, 4), (3, 0), (7, 3)].enumerated().map { n, shape in
            let ids = (0..<shape.0).map { _ in Int(rng.next() % UInt64(vocab)) }
            let labels = ids.enumerated().map { $0.offset < shape.1 ? TrainingExample.ignoredLabel : $0.element }
            return TrainingExample(ids: ids, labels: labels, source: "test:\(n + 1)")
        }
    }

    func testPackedBatchCarriesPositionsAndCutsLabelsAtBoundaries() throws {
        let ex = Self.examples(vocab: 16)
        let it = try BatchIterator(examples: ex, batchSize: 2, layout: .packed(sequenceLength: 16), padId: 0, seed: 0, shuffle: false)
        let batches = try CausalLMBatches(it.batches(epoch: 0), source: "test", packed: true)
        XCTAssertEqual(batches.count, 1)
        let b = try batches.batch(0)
        XCTAssertEqual(b.ids["input_ids"]!.shape, [2, 16])
        // Row 0: examples of 6 and 9 tokens (+1 pad); row 1: 3 and 7 (+6 pad).
        XCTAssertEqual(b.ids["position_ids"]!.scalars, Self.positions([6, 9, 1]) + Self.positions([3, 7, 1, 1, 1, 1, 1, 1]))
        let labels = b.ids["labels"]!.scalars
        for start in [0, 6, 16, 19] { XCTAssertEqual(labels[start], -100, "an example's first label is never a target (position \(start))") }
        XCTAssertEqual(labels[6 + 4], Int32(ex[1].ids[4]), "trained labels kept")
        // Loss terms: the trained labels after each example's first token: 4 + 5 + 2 + 4.
        XCTAssertEqual(b.lossTerms, 15)
        XCTAssertEqual(b.tokens, 25)
        XCTAssertThrowsError(try CausalLMBatches(it.batches(epoch: 0), source: "test")) { e in XCTAssert("\(e)".contains("packed"), "\(e)") }
    }

    /// The same examples as one padded batch and as packed rows: the same loss and the same LoRA
    /// gradients (the mean over the same trained tokens).
    func testPackedLossAndGradientsEqualPadded() throws {
        let model = try Self.tinyModel()
        let ex = Self.examples(vocab: model.config.vocabSize)
        let step = try CausalLMTrainingStep(model: model)
        func run(_ layout: BatchLayout, packed: Bool, rows: Int) throws -> (loss: Float, grads: [Float]) {
            let it = try BatchIterator(examples: ex, batchSize: rows, layout: layout, padId: 0, seed: 0, shuffle: false)
            let batches = try CausalLMBatches(it.batches(epoch: 0), source: "test", packed: packed)
            XCTAssertEqual(batches.count, 1)
            step.parameters.zeroGradients()
            let loss = try step.run(try batches.batch(0))
            return (loss, step.parameters.flatGradients)
        }
        let padded = try run(.padToLongest(maxLength: nil), packed: false, rows: 4)
        for (seq, rows) in [(25, 1), (16, 2)] {
            let packed = try run(.packed(sequenceLength: seq), packed: true, rows: rows)
            XCTAssertEqual(packed.loss, padded.loss, accuracy: 1e-5 * padded.loss, "rows of \(seq): loss")
            assertClose(packed.grads, padded.grads, relative: 1e-5, "rows of \(seq): LoRA gradients")
            XCTAssertGreaterThan(packed.grads.map(abs).max()!, 0)
        }
    }

    func testPackedTrainingStepOneAndTwoThreadsBitwise() throws {
        func run(_ threads: Int) throws -> (Float, [Float]) {
            let model = try Self.tinyModel()
            let step = try CausalLMTrainingStep(model: model, options: CompileOptions(threads: threads))
            let it = try BatchIterator(examples: Self.examples(vocab: model.config.vocabSize), batchSize: 2, layout: .packed(sequenceLength: 16),
                                       padId: 0, seed: 0, shuffle: false)
            let loss = try step.run(try CausalLMBatches(it.batches(epoch: 0), source: "test", packed: true).batch(0))
            return (loss, step.parameters.flatGradients)
        }
        let one = try run(1), two = try run(2)
        XCTAssertEqual(one.0.bitPattern, two.0.bitPattern)
        assertBitIdentical(one.1, two.1, "packed LoRA gradients: 1 vs 2 threads")
    }
}
