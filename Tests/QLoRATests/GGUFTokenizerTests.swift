import Foundation
import XCTest
@testable import QLoRA

/// The tokenizer built from a GGUF's `tokenizer.ggml.*` metadata: on SmolLM2's GGUF (after
/// `make model`) it encodes every string of ../shared/reference/smollm2/tokenizer/encodings.json
/// as llama.cpp does (`ids_llamacpp_smollm_pretokenizer_emulated` where given, else `ids`), and
/// equals the tokenizer.json-built one (with the same `smollm` pre-tokenizer) token for token.
/// Hostile metadata is checked on small GGUFs written by GGUFBuilder.
final class GGUFTokenizerTests: XCTestCase {
    static let modelFile = Reference.projectRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")

    static func ggufTokenizer() throws -> BPETokenizer {
        guard FileManager.default.fileExists(atPath: GGUFTokenizerTests.modelFile.path) else {
            throw XCTSkip("models/SmolLM2-135M-Instruct.Q4_1.gguf absent (run `make model`)")
        }
        return try BPETokenizer.load(gguf: GGUFTokenizerTests.modelFile.path)
    }

    static func encodings() throws -> [JSONValue] {
        let v = try JSONValue.parse(try Reference.bytes("smollm2/tokenizer/encodings.json"), file: "encodings.json", field: "(root)")
        guard case .array(let items) = v else { throw QLoraError.malformedFile(file: "encodings.json", field: "(root)", reason: "not an array") }
        return items
    }

    static func ints(_ v: JSONValue?) -> [Int]? {
        guard case .array(let a)? = v else { return nil }
        return a.map { if case .int(let i) = $0 { return i } else { return -1 } }
    }

    func testSmolLM2GGUFEncodesLikeLlamaCpp() throws {
        let g = try GGUFTokenizerTests.ggufTokenizer()
        XCTAssertEqual(g.vocabularySize, 49152)
        XCTAssertEqual(g.addedTokens.count, 17)
        XCTAssertEqual(g.bosTokenId, 1)
        XCTAssertEqual(g.eosTokenId, 2)
        XCTAssertEqual(g.padTokenId, 2)
        XCTAssertEqual(g.preTokenizer, try PreTokenizer.llamaCpp(pre: "smollm"))
        XCTAssertEqual(g.encode("Hello world", addSpecialTokens: true), [19556, 905])  // add_bos_token false
        XCTAssertTrue(g.chatTemplate?.hasPrefix("{% for message in messages %}") ?? false)

        let cases = try GGUFTokenizerTests.encodings()
        XCTAssertEqual(cases.count, 186)
        for c in cases {
            guard case .string(let text)? = c["text"], let ids = GGUFTokenizerTests.ints(c["ids"]) else { XCTFail("bad case \(c)"); continue }
            let expected = GGUFTokenizerTests.ints(c["ids_llamacpp_smollm_pretokenizer_emulated"]) ?? ids
            XCTAssertEqual(g.encode(text), expected, "encode \(text.debugDescription)")
            if case .string(let decoded)? = c["decoded"] { XCTAssertEqual(try g.decode(expected), decoded) }
        }
    }

    func testSmolLM2GGUFEqualsTokenizerJSON() throws {
        let g = try GGUFTokenizerTests.ggufTokenizer()
        let j = try TokenizerTests.tokenizer.get().withPreTokenizer(try PreTokenizer.llamaCpp(pre: "smollm"))
        XCTAssertEqual(g.vocabularySize, j.vocabularySize)
        for id in 0..<g.vocabularySize {
            XCTAssertEqual(g.token(of: id), j.token(of: id), "token \(id)")
            XCTAssertEqual(g.isSpecialToken(id), j.isSpecialToken(id), "special \(id)")
        }
        XCTAssertEqual(g.chatTemplate, j.chatTemplate)
        var rng = SplitMix64(seed: 11)
        for n in 0..<300 {
            let text = TokenizerTests.randomText(&rng, length: 1 + n % 80)
            XCTAssertEqual(g.encode(text), j.encode(text), text.debugDescription)
        }
    }

    /// A small gpt2 vocabulary in GGUF metadata.
    func metadata(_ extra: [(String, GGUFValue)] = [], drop: Set<String> = []) -> [(String, GGUFValue)] {
        let tokens = ["<s>", "a", "b", "ab", "\u{120}", "\u{120}ab"]
        var kv: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string("gpt2")),
            ("tokenizer.ggml.tokens", .array(.string(tokens))),
            ("tokenizer.ggml.token_type", .array(.int32([3, 1, 1, 1, 1, 1]))),
            ("tokenizer.ggml.merges", .array(.string(["a b", "\u{120} ab"]))),
            ("tokenizer.ggml.bos_token_id", .uint32(0)),
        ]
        kv.removeAll { drop.contains($0.0) }
        for (k, v) in extra { kv.removeAll { $0.0 == k }; kv.append((k, v)) }
        return kv
    }

    func tokenizer(_ kv: [(String, GGUFValue)]) throws -> BPETokenizer {
        try BPETokenizer(ggufMetadata: GGUFMetadata(entries: kv.map { GGUFKeyValue(key: $0.0, value: $0.1) }, path: "t.gguf"))
    }

    func testSmallGGUFVocabulary() throws {
        let t = try tokenizer(metadata())
        XCTAssertEqual(t.encode("ab ab<s>b"), [3, 5, 0, 2])
        XCTAssertEqual(t.encode("ab", addSpecialTokens: true), [0, 3])  // llama.cpp adds BOS by default
        XCTAssertTrue(t.isSpecialToken(0))
        let noBos = try tokenizer(metadata([("tokenizer.ggml.add_bos_token", .bool(false))]))
        XCTAssertEqual(noBos.encode("ab", addSpecialTokens: true), [3])
    }

    func testBadMetadataNamesTheKey() throws {
        func expect(_ kv: [(String, GGUFValue)], _ needle: String, line: UInt = #line) {
            XCTAssertThrowsError(try tokenizer(kv), line: line) { e in
                XCTAssertTrue("\(e)".contains(needle), "\(e) lacks \(needle)", line: line)
            }
        }
        expect(metadata([("tokenizer.ggml.model", .string("bert"))]), "tokenizer.ggml.model")
        expect(metadata([("tokenizer.ggml.model", .string("llama"))]), "tokenizer.ggml.scores")  // a llama vocabulary needs scores
        expect(metadata(drop: ["tokenizer.ggml.tokens"]), "tokenizer.ggml.tokens")
        expect(metadata([("tokenizer.ggml.token_type", .array(.int32([3, 1])))]), "tokenizer.ggml.token_type")
        expect(metadata([("tokenizer.ggml.token_type", .array(.int32([3, 1, 1, 1, 1, 9])))]), "element 5")
        expect(metadata([("tokenizer.ggml.merges", .array(.string(["a b c"])))]), "tokenizer.ggml.merges")
        expect(metadata([("tokenizer.ggml.merges", .array(.string(["b b"])))]), "tokenizer.ggml.merges")
        expect(metadata([("tokenizer.ggml.bos_token_id", .uint32(99))]), "tokenizer.ggml.bos_token_id")
        expect(metadata([("tokenizer.ggml.pre", .string("qwen9"))]), "qwen9")
        expect(metadata([("tokenizer.ggml.add_bos_token", .string("yes"))]), "tokenizer.ggml.add_bos_token")
    }
}
