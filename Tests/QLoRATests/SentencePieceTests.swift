import Foundation
import XCTest
@testable import QLoRA

/// SentencePiece BPE against the `sentencepiece` library on Mistral's tokenizer.model.v1 (from
/// PyPI mistral-common; Tests/Fixtures/sentencepiece, made once by make_fixtures.py): 64 hard
/// strings encode to its ids and decode back as it decodes, 17 id lists decode as it decodes;
/// the same vocabulary given as GGUF `llama` metadata (as llama.cpp's converter writes it) encodes
/// the same; malformed models and metadata are errors naming the field.
final class SentencePieceTests: XCTestCase {
    static let dir = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/sentencepiece")
    static let model: Result<SentencePieceTokenizer, Error> = Result {
        try SentencePieceTokenizer.load(model: dir.appendingPathComponent("tokenizer.model.v1").path)
    }

    func cases() throws -> (JSONValue, [JSONValue]) {
        let url = SentencePieceTests.dir.appendingPathComponent("cases.json")
        let doc = try JSONValue.parse([UInt8](try Data(contentsOf: url)), file: url.path, field: "(root)")
        guard case .array(let c)? = doc["cases"] else { throw QLoraError.malformedFile(file: url.path, field: "cases", reason: "missing") }
        return (doc, c)
    }

    func check(_ t: SentencePieceTokenizer, decoding: Bool = true) throws {
        let (_, cases) = try cases()
        var encoded = 0, decoded = 0
        for c in cases {
            let ids = GGUFTokenizerTests.ints(c["ids"]) ?? []
            if case .string(let text)? = c["text"] {
                XCTAssertEqual(t.encode(text), ids, text.debugDescription)
                if case .array(let pieces)? = c["pieces"] {
                    XCTAssertEqual(t.encode(text).map { .string(t.token(of: $0) ?? "?") }, pieces, text.debugDescription)
                }
                encoded += 1
            }
            if decoding, case .string(let d)? = c["decoded"] {
                XCTAssertEqual(try t.decode(ids), d, "decode \(ids)")
                decoded += 1
            }
        }
        XCTAssertEqual(encoded, 64)
        if decoding { XCTAssertEqual(decoded, 81) }
    }

    func testEncodesAndDecodesAsSentencePiece() throws {
        let t = try SentencePieceTests.model.get()
        let (doc, _) = try cases()
        XCTAssertEqual(.int(t.vocabularySize), doc["vocab_size"])
        XCTAssertEqual(t.bosTokenId.map { JSONValue.int($0) }, doc["bos_id"])
        XCTAssertEqual(t.eosTokenId.map { JSONValue.int($0) }, doc["eos_id"])
        XCTAssertEqual(t.unknownId.map { JSONValue.int($0) }, doc["unk_id"])
        try check(t)
        XCTAssertEqual(t.encode("Hello world", addBos: true), [1, 22557, 1526])
        XCTAssertThrowsError(try t.decode([32000])) { XCTAssertTrue("\($0)".contains("32000")) }
    }

    func testGGUFLlamaVocabulary() throws {
        let t = try SentencePieceTests.model.get()
        let kv: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array(.string(t.pieces))),
            ("tokenizer.ggml.scores", .array(.float32(t.scores))),
            ("tokenizer.ggml.token_type", .array(.int32(t.types.map { Int32($0) }))),
            ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.unknown_token_id", .uint32(0)),
        ]
        func make(_ kv: [(String, GGUFValue)]) throws -> SentencePieceTokenizer {
            try SentencePieceTokenizer(ggufMetadata: GGUFMetadata(entries: kv.map { GGUFKeyValue(key: $0.0, value: $0.1) }, path: "m.gguf"))
        }
        try check(try make(kv))
        let noPrefix = try make(kv + [("tokenizer.ggml.add_space_prefix", .bool(false))])
        // Without add_space_prefix no "▁" is put in front: "Hello" starts with "H...", not "▁Hello".
        XCTAssertEqual(t.encode("Hello").map { t.token(of: $0) }, ["\u{2581}Hello"])
        XCTAssertFalse(noPrefix.encode("Hello").compactMap { noPrefix.token(of: $0) }.joined().hasPrefix("\u{2581}"))
        XCTAssertEqual(noPrefix.encode("Hello").compactMap { noPrefix.token(of: $0) }.joined(), "Hello")
        func expect(_ kv: [(String, GGUFValue)], _ needle: String, line: UInt = #line) {
            XCTAssertThrowsError(try make(kv), line: line) { XCTAssertTrue("\($0)".contains(needle), "\($0)", line: line) }
        }
        expect([("tokenizer.ggml.model", .string("gpt2"))] + kv.dropFirst(), "tokenizer.ggml.model")
        expect(kv.filter { $0.0 != "tokenizer.ggml.scores" }, "tokenizer.ggml.scores")
        expect(kv + [("tokenizer.ggml.bos_token_id", .uint32(99999))], "tokenizer.ggml.bos_token_id")
    }

    func testMalformedModelFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sp-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func expect(_ bytes: [UInt8], _ needle: String, line: UInt = #line) throws {
            let f = dir.appendingPathComponent("m.model")
            try Data(bytes).write(to: f)
            XCTAssertThrowsError(try SentencePieceTokenizer.load(model: f.path), line: line) {
                XCTAssertTrue("\($0)".contains(needle) && "\($0)".contains("m.model"), "\($0)", line: line)
            }
        }
        try expect([0x0A, 0x05, 0x0A, 0x01], "runs past the end")
        try expect([0x0A, 0x80], "truncated varint")
        try expect([], "no pieces")
        try expect([0x0F], "wire type 7")
        // A unigram model (trainer_spec.model_type = 1) with one piece.
        try expect([0x0A, 0x03, 0x0A, 0x01, 0x61, 0x12, 0x02, 0x18, 0x01], "unigram")
        let full = try Data(contentsOf: SentencePieceTests.dir.appendingPathComponent("tokenizer.model.v1"))
        try expect(Array(full.prefix(1000)), "past the end")
    }
}
