import Foundation
import XCTest
@testable import QLoRA

/// The tokenizer files `qlora quantize` writes for a GGUF "llama" (SentencePiece) vocabulary
/// (GGUFSentencePieceTokenizerJSON.swift), on llama.cpp's ggml-vocab-llama-spm.gguf and
/// ggml-vocab-phi-3.gguf (`make vocab`; skipped when absent):
/// (a) tokenizer.json equals what transformers 5.24 saves for the same GGUF — every field, with
///     model.vocab and model.merges compared by count and SHA-256 of their lines
///     (Tests/Fixtures/llamacpp-vocab/cases.json "export") — and tokenizer_config.json's tokens;
/// (b) the tokenizer loaded back from the written files encodes and decodes every llama.cpp test
///     string exactly as the GGUF path does;
/// (c) `qlora quantize` on a tiny random Llama GGUF carrying the llama-spm vocabulary writes
///     tokenizer files that load, and `qlora tokenize --tokenizer DIR` reads them.
final class GGUFTokenizerExportTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-tok-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    static func linesSHA(_ lines: [String]) -> String {
        var bytes: [UInt8] = []
        for l in lines { bytes += Array(l.utf8); bytes.append(0x0A) }
        return bytes.withUnsafeBytes { SHA256.hex($0) }
    }

    /// model.vocab / model.merges replaced by {"count", "sha256"} of their lines, as make_fixtures.py does.
    static func digested(_ v: JSONValue) throws -> JSONValue {
        guard case .object(var root) = v, let mi = root.firstIndex(where: { $0.key == "model" }), case .object(var model) = root[mi].value,
              let vi = model.firstIndex(where: { $0.key == "vocab" }), case .object(let vocab) = model[vi].value,
              let ri = model.firstIndex(where: { $0.key == "merges" }), case .array(let merges) = model[ri].value else {
            throw QLoraError.malformedFile(file: "tokenizer.json", field: "model", reason: "no vocab / merges")
        }
        let vocabLines = vocab.map { e -> String in
            if case .int(let id) = e.value { return "\(e.key)\t\(id)" }
            return "\(e.key)\t?"
        }
        let mergeLines = try merges.map { m -> String in
            guard case .array(let p) = m, p.count == 2, case .string(let l) = p[0], case .string(let r) = p[1] else {
                throw QLoraError.malformedFile(file: "tokenizer.json", field: "model.merges", reason: "not a pair")
            }
            return "\(l) \(r)"
        }
        model[vi].value = .object([("count", .int(vocab.count)), ("sha256", .string(linesSHA(vocabLines)))])
        model[ri].value = .object([("count", .int(merges.count)), ("sha256", .string(linesSHA(mergeLines)))])
        root[mi].value = .object(model)
        return JSONValue.object(root).sortedKeys()
    }

    func testTokenizerJSONEqualsTransformersSave() throws {
        for name in ["llama-spm", "phi-3"] {
            let url = try LlamaCppVocabTests.gguf(name)
            let md = try GGUFFile(url: url).metadata
            let written = try XCTUnwrap(try GGUFTokenizerJSON.json(md))
            let ours = try JSONValue.parse(Array(written.utf8), file: name, field: "tokenizer.json")
            let export = try XCTUnwrap(try LlamaCppVocabTests.fixture.get()["export"]?[name])
            XCTAssertEqual(try Self.digested(ours), try XCTUnwrap(export["tokenizer.json"]).sortedKeys(), name)

            let config = try JSONValue.parse(Array(try XCTUnwrap(try GGUFTokenizerJSON.config(md)).utf8), file: name, field: "tokenizer_config.json")
            let refConfig = try XCTUnwrap(export["tokenizer_config.json"])
            for key in ["bos_token", "eos_token", "unk_token", "pad_token", "tokenizer_class", "backend"] {
                XCTAssertEqual(config[key] ?? .null, refConfig[key] ?? .null, "\(name) tokenizer_config.json \(key)")
            }

            // (b) the written files read back encode and decode as the GGUF does.
            let fromGGUF = try BPETokenizer(ggufMetadata: md)
            let fromJSON = try BPETokenizer(tokenizerJSON: Array(written.utf8), config: Array(try GGUFTokenizerJSON.config(md)!.utf8))
            XCTAssertEqual(fromJSON.vocabularySize, fromGGUF.vocabularySize)
            XCTAssertEqual(fromJSON.addedTokens.sorted { $0.id < $1.id }, fromGGUF.addedTokens.sorted { $0.id < $1.id })
            for c in try LlamaCppVocabTests.vectors(name) {
                XCTAssertEqual(fromJSON.encode(c.text), fromGGUF.encode(c.text), "\(name) \(c.text.debugDescription)")
                XCTAssertEqual(fromJSON.encode(c.text, addSpecialTokens: true), fromGGUF.encode(c.text, addSpecialTokens: true))
                XCTAssertEqual(try fromJSON.decode(c.ids), try fromGGUF.decode(c.ids))
            }
        }
    }

    /// Llama-2's vocabulary holds canonically equivalent tokens ("ί" U+03AF id 30207 and U+1F77
    /// id 30873; Swift's String equality joins them): both the GGUF path and the written
    /// tokenizer.json keep them apart, as transformers does (its ids of the same GGUF, recorded
    /// once with transformers 5.24).
    func testCanonicallyEquivalentTokensStayDistinct() throws {
        let md = try GGUFFile(url: try LlamaCppVocabTests.gguf("llama-spm")).metadata
        let fromGGUF = try BPETokenizer(ggufMetadata: md)
        let fromJSON = try BPETokenizer(tokenizerJSON: Array(try XCTUnwrap(try GGUFTokenizerJSON.json(md)).utf8))
        let cases: [(String, [Int])] = [("\u{03AF}", [29871, 30207]), ("\u{1F77}", [29871, 30873]),
                                        ("\u{03AC}\u{1F71}\u{03AF}\u{1F77}", [29871, 30216, 31042, 30207, 30873])]
        for (text, ids) in cases {
            XCTAssertEqual(fromGGUF.encode(text), ids, text.unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: " "))
            XCTAssertEqual(fromJSON.encode(text), ids)
            XCTAssertTrue(try fromJSON.decode(ids).unicodeScalars.elementsEqual(text.unicodeScalars))
        }
        XCTAssertEqual(fromJSON.token(of: 30207).map { Array($0.unicodeScalars) }, ["\u{03AF}"])
        XCTAssertEqual(fromJSON.token(of: 30873).map { Array($0.unicodeScalars) }, ["\u{1F77}"])
    }

    func testQuantizeWritesLoadableTokenizerFiles() throws {
        let vocab = try GGUFFile(url: try LlamaCppVocabTests.gguf("llama-spm")).metadata
        let tokenizerKeys = vocab.entries.filter { $0.key.hasPrefix("tokenizer.") }.map { ($0.key, $0.value) }
        let model = tmp.appendingPathComponent("tiny-llama-spm.gguf")
        try GGUFLlamaVocabularyTests.writeTinyLlama(to: model, tokenizer: [("general.architecture", .string("llama"))] + tokenizerKeys,
                                                    vocabulary: 32000)
        let out = tmp.appendingPathComponent("nf4")
        let r = try CLIRunner.run(["quantize", model.path, "-o", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(Set(try FileManager.default.contentsOfDirectory(atPath: out.path)).isSuperset(of: ["tokenizer.json", "tokenizer_config.json"]))

        let fromGGUF = try BPETokenizer.load(gguf: model.path)
        let fromDir = try BPETokenizer.load(tokenizerJSON: out.appendingPathComponent("tokenizer.json").path)
        XCTAssertEqual(fromDir.bosTokenId, 1)
        XCTAssertEqual(fromDir.eosTokenId, 2)
        for c in try LlamaCppVocabTests.vectors("llama-spm") {
            XCTAssertEqual(fromDir.encode(c.text, addSpecialTokens: true), fromGGUF.encode(c.text, addSpecialTokens: true), c.text.debugDescription)
        }
        let t = try CLIRunner.run(["tokenize", "--tokenizer", out.path], stdin: "Hello world")
        XCTAssertEqual(t.status, 0, t.stderr)
        let v = try JSONValue.parse(Array(t.stdout.utf8), file: "stdout", field: "$")
        XCTAssertEqual(GGUFTokenizerTests.ints(v["ids"]), fromGGUF.encode("Hello world"))
        XCTAssertEqual(GGUFTokenizerTests.ints(v["ids"]), [15043, 3186])
    }
}
