import Foundation
import XCTest
@testable import QLoRA

/// Generation with the KV cache: cached greedy decoding gives the tokens of recomputing the whole
/// sequence every step; SmolLM2's NF4 greedy generations equal transformers'; sampling is
/// reproducible by seed; `qlora generate` prints the library's tokens.
final class LlamaGenerationTests: XCTestCase {
    func interopModel() throws -> LlamaModel {
        try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
    }

    /// Greedy by full recomputation: the whole sequence through the model at each step.
    func recomputed(_ model: LlamaModel, prompt: [Int32], steps: Int) throws -> [Int32] {
        var seq = prompt, out: [Int32] = []
        for _ in 0..<steps {
            let logits = try model.logits(IntTensor(shape: [1, seq.count], scalars: seq)).scalars
            let next = Int32(TokenSampler.greedy.nextCopy(logits[((seq.count - 1) * model.config.vocabSize)...]))
            out.append(next)
            seq.append(next)
        }
        return out
    }

    func testCachedGreedyEqualsRecomputation() throws {
        let model = try interopModel()
        let prompt: [Int32] = [15, 0, 11, 15]
        let generator = try LlamaGenerator(model: model, capacity: 24)
        let r = try generator.generate(prompt: prompt, maxNewTokens: 16)
        XCTAssertEqual(r.tokens.count, 16)
        XCTAssertEqual(r.tokens, try recomputed(model, prompt: prompt, steps: 16))
        // The cached logits themselves agree with the full forward's last position.
        let full = try model.logits(IntTensor(shape: [1, prompt.count + 15], scalars: prompt + r.tokens.prefix(15))).scalars
        generator.cache.reset()
        _ = try generator.feed(prompt)
        var last: [Float] = []
        for t in r.tokens.prefix(15) { last = try generator.feed([t]) }
        assertClose(last, Array(full[((prompt.count + 14) * 16)...]), relative: 1e-5, "cached vs full last-position logits")
        // Overflowing the cache is an error, not a write out of bounds.
        XCTAssertThrowsError(try generator.feed([Int32](repeating: 1, count: 10))) { e in XCTAssert("\(e)".contains("KV cache holds 24"), "\(e)") }
    }

    /// The cache ops check their run-time positions: a write past the capacity or a live length
    /// outside [queries, capacity] fails the run instead of touching memory out of bounds.
    func testCacheOpsRejectRunTimePositionsOutOfRange() throws {
        let cacheK = try StateStorage(name: "k", shape: [1, 4, 8]), cacheV = try StateStorage(name: "v", shape: [1, 4, 8])
        let g = Graph()
        let q = g.input("q", shape: [1, 2, 8]), kv = g.input("kv", shape: [1, 2, 8])
        let at = g.input("at", shape: [1], element: .int32), length = g.input("length", shape: [1], element: .int32)
        let k = try g.kvWrite(g.state(cacheK), kv, at: at), v = try g.kvWrite(g.state(cacheV), kv, at: at)
        g.output("o", try g.attention(q: q, k: k, v: v, heads: 2, kvHeads: 2, headDim: 4, kvLength: length))
        let plan = try g.compile()
        var rng = SeededRandom(seed: 11)
        let feeds = ["q": try Tensor(shape: [1, 2, 8], scalars: rng.floats(16)), "kv": try Tensor(shape: [1, 2, 8], scalars: rng.floats(16))]
        func run(_ a: Int32, _ l: Int32) throws -> [Float] {
            try plan.run(feeds, ids: ["at": IntTensor(shape: [1], scalars: [a]), "length": IntTensor(shape: [1], scalars: [l])])["o"]!.scalars
        }
        // Written at 2..<4, read with length 4: the same as plain attention over [zeros(2), kv] rows.
        let cached = try run(2, 4)
        XCTAssertEqual(Array(cacheK.tensor.scalars[16...]), feeds["kv"]!.scalars)
        let g2 = Graph()
        let q2 = g2.input("q", shape: [1, 2, 8]), k2 = g2.input("k", shape: [1, 4, 8])
        g2.output("o", try g2.attention(q: q2, k: k2, v: k2, heads: 2, kvHeads: 2, headDim: 4))
        let full = try Tensor(shape: [1, 4, 8], scalars: [Float](repeating: 0, count: 16) + feeds["kv"]!.scalars)
        assertBitIdentical(cached, try g2.compile().run(["q": feeds["q"]!, "k": full])["o"]!.scalars, "cache vs plain attention")
        XCTAssertThrowsError(try run(3, 4)) { e in XCTAssert("\(e)".contains("outside the cache's 4 positions"), "\(e)") }
        XCTAssertThrowsError(try run(0, 5)) { e in XCTAssert("\(e)".contains("kv_length 5"), "\(e)") }
        XCTAssertThrowsError(try run(0, 1)) { e in XCTAssert("\(e)".contains("kv_length 1"), "\(e)") }
    }

    func testSamplingIsSeededAndRestricted() throws {
        let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5]
        var greedy = TokenSampler.greedy
        XCTAssertEqual(greedy.next(logits[...]), 1)
        var top1 = TokenSampler(temperature: 1, topK: 1, seed: 5)
        XCTAssertEqual((0..<20).map { _ in top1.next(logits[...]) }, [Int](repeating: 1, count: 20))
        var a = TokenSampler(temperature: 1, seed: 42), b = TokenSampler(temperature: 1, seed: 42)
        let draws = (0..<1000).map { _ in a.next(logits[...]) }
        XCTAssertEqual(draws, (0..<1000).map { _ in b.next(logits[...]) })
        XCTAssertEqual(Set(draws), Set(0..<5), "temperature 1 reaches every token in 1000 draws")
        var nucleus = TokenSampler(temperature: 1, topP: 0.6, seed: 1)
        XCTAssertEqual(Set((0..<200).map { _ in nucleus.next(logits[...]) }), [1, 3], "top-p 0.6 keeps the two tokens reaching it")
        XCTAssertThrowsError(try TokenSampler(temperature: 1, topP: 0).validate())
        XCTAssertThrowsError(try TokenSampler(temperature: -1).validate())
    }

    /// transformers' model.generate(do_sample=False, max_new_tokens=24, eos_token_id=2) on the NF4 model.
    func testSmolLM2GreedyGenerationsMatchTransformers() throws {
        let file = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw XCTSkip("\(file.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        let model = try LlamaModel.load(file)
        XCTAssertEqual(model.config.eosTokenIds, [2])
        let outputs = try JSONValue.parse(Reference.bytes("smollm2/nf4/outputs.json"), file: "outputs.json", field: "$")
        guard case let .array(prompts)? = outputs["prompts"] else { return XCTFail("prompts") }
        let generator = try LlamaGenerator(model: model, capacity: 64)
        for p in prompts {
            guard case let .array(ids)? = p["input_ids"], case let .array(expected)? = p["generated_ids"], case let .string(name)? = p["name"] else {
                return XCTFail("prompt")
            }
            let r = try generator.generate(prompt: ids.compactMap(\.doubleValue).map { Int32($0) }, maxNewTokens: 24, eos: model.config.eosTokenIds)
            XCTAssertEqual(r.tokens, expected.compactMap(\.doubleValue).map { Int32($0) }, name)
        }
    }

    func testGenerateCommand() throws {
        let model = Reference.url("interop/model_bnb4bit").path, adapter = Reference.url("interop/adapter").path
        let r = try CLIRunner.run(["generate", "--model", model, "--adapter", adapter, "--prompt-ids", "15,0,11,15", "--max-new-tokens", "6",
                                   "--format", "json", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "$")
        guard case let .array(ids)? = json["ids"], case let .array(prompt)? = json["prompt_ids"] else { return XCTFail(r.stdout) }
        let expected = try LlamaGenerator(model: interopModel(), capacity: 10).generate(prompt: [15, 0, 11, 15], maxNewTokens: 6).tokens
        XCTAssertEqual(ids.compactMap(\.doubleValue).map { Int32($0) }, expected)
        XCTAssertEqual(prompt.count, 4)
        XCTAssertNotNil(json["prefill_tokens_per_s"]?.doubleValue)
        XCTAssertNotNil(json["decode_tokens_per_s"]?.doubleValue)
        try CLIRunner.assertUserError(["generate", "--model", model, "--prompt-ids", "1,x"], ["--prompt-ids", "1,x"])
        try CLIRunner.assertUserError(["generate", "--model", model, "--prompt-ids", "1", "--top-p", "2"], ["--top-p"])
        try CLIRunner.assertUserError(["generate", "--model", model, "--prompt-ids", "99"], ["99", "vocabulary"])
    }
}

extension TokenSampler {
    /// `next` without keeping the state (greedy needs none).
    func nextCopy(_ logits: ArraySlice<Float>) -> Int { var s = self; return s.next(logits) }
}
