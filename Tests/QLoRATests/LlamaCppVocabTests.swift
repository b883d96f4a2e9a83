import Foundation
import XCTest
@testable import QLoRA

/// Real vocabularies: llama.cpp's vocabulary-only GGUFs and its own tokenizer test vectors
/// (models/ggml-vocab-NAME.gguf + .inp strings + .out token ids, as tests/test-tokenizer-0.cpp
/// reads them: no BOS added, special tokens not parsed), fetched by `make vocab` from PyPI's
/// llama-cpp-python 0.3.36 sdist into models/vocab/ (skipped with a message when absent).
/// Every string of every supported vocabulary is encoded as llama.cpp's .out says — except where
/// the SentencePiece vocabulary follows transformers on purpose (GGUFLlamaVocabulary.swift), where
/// it equals transformers' own encoding of the same GGUF (Tests/Fixtures/llamacpp-vocab/cases.json,
/// made once by make_fixtures.py), so each string is checked against an independent reference.
/// Decoding the .out ids gives the .inp text wherever llama.cpp's own detokenizer does (cases.json).
final class LlamaCppVocabTests: XCTestCase {
    static let vocabDir = Reference.projectRoot.appendingPathComponent("models/vocab")

    /// The vocabularies whose tokenizer model and pre-tokenizer are implemented.
    static let supported = ["llama-spm", "phi-3", "llama-bpe", "qwen2", "gpt-2", "starcoder", "refact", "command-r", "mpt",
                            "falcon", "deepseek-coder"]

    static func gguf(_ name: String) throws -> URL {
        let url = vocabDir.appendingPathComponent("ggml-vocab-\(name).gguf")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("\(url.path) is absent: run `make vocab` (llama.cpp's vocabularies from PyPI's llama-cpp-python sdist)")
        }
        return url
    }

    /// The .inp strings (separated by "\n__ggml_vocab_test__\n") and the .out id lists, as
    /// test-tokenizer-0.cpp's read_tests splits them.
    static func vectors(_ name: String) throws -> [(text: String, ids: [Int])] {
        let base = try gguf(name).path
        guard let raw = FileManager.default.contents(atPath: base + ".inp").flatMap({ String(data: $0, encoding: .utf8) }),
              let out = FileManager.default.contents(atPath: base + ".out").flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw QLoraError.io(file: base + ".inp/.out", reason: "cannot read the test vectors")
        }
        var strings = raw.components(separatedBy: "\n__ggml_vocab_test__\n")
        if strings.last == "" { strings.removeLast() }
        let lines = out.components(separatedBy: "\n")
        guard lines.count >= strings.count else { throw QLoraError.io(file: base + ".out", reason: "fewer lines than strings") }
        return zip(strings, lines).map { s, line in (s, line.split(separator: " ").map { Int($0)! }) }
    }

    /// Each supported vocabulary's tokenizer, loaded once for the tests of this file.
    static let tokenizers: Result<[String: BPETokenizer], Error> = Result {
        var out: [String: BPETokenizer] = [:]
        for name in supported { out[name] = try BPETokenizer.load(gguf: try gguf(name).path) }
        return out
    }

    static func tokenizer(_ name: String) throws -> BPETokenizer {
        try XCTUnwrap(try tokenizers.get()[name], name)
    }

    static let fixture: Result<JSONValue, Error> = Result {
        let url = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/llamacpp-vocab/cases.json")
        return try JSONValue.parse([UInt8](try Data(contentsOf: url)), file: url.path, field: "(root)")
    }

    static func entry(_ name: String) throws -> JSONValue {
        try XCTUnwrap(try fixture.get()["vocabs"]?[name], "cases.json has no \(name)")
    }

    /// Strings on which llama.cpp and transformers knowingly differ for a vocabulary, and why.
    /// llama-spm (Llama-2): llama.cpp always puts "▁" before the text (add_space_prefix), while
    /// transformers' Metaspace(prepend_scheme "first") adds none when the text starts with a
    /// space, so " Hello" is [▁, ▁Hello] there and [▁Hello] here. phi-3: transformers'
    /// Prepend("▁") normalizer agrees with llama.cpp on every string.
    static func transformersDiffers(_ name: String, _ text: String) -> Bool {
        name == "llama-spm" && text.hasPrefix(" ")
    }

    func testEncodesAsLlamaCpp() throws {
        var checked = 0, againstTransformers = 0
        for name in Self.supported {
            let t = try Self.tokenizer(name)
            let cases = try Self.vectors(name)
            let entry = try Self.entry(name)
            XCTAssertEqual(entry["count"], .int(cases.count), name)
            var transformersIds: [JSONValue]? = nil
            if case .array(let lists)? = entry["transformers_ids"] { transformersIds = lists }
            for (k, c) in cases.enumerated() {
                let ours = t.encode(c.text)
                if let lists = transformersIds {
                    let reference = GGUFTokenizerTests.ints(lists[k]) ?? []
                    if Self.transformersDiffers(name, c.text) {
                        XCTAssertNotEqual(reference, c.ids, "\(name) \(c.text.debugDescription): listed as a difference but transformers agrees with llama.cpp")
                        XCTAssertEqual(ours, reference, "\(name) \(c.text.debugDescription): against transformers")
                        againstTransformers += 1
                        continue
                    }
                    XCTAssertEqual(reference, c.ids, "\(name) \(c.text.debugDescription): transformers and llama.cpp differ here")
                }
                XCTAssertEqual(ours, c.ids, "\(name) \(c.text.debugDescription)")
                checked += 1
            }
        }
        XCTAssertEqual(checked + againstTransformers, 46 * Self.supported.count)
        XCTAssertEqual(againstTransformers, 15)
    }

    func testDecodesWhereLlamaCppRoundTrips() throws {
        var roundTrips = 0
        for name in Self.supported {
            let t = try Self.tokenizer(name)
            guard case .array(let detokenized)? = try Self.entry(name)["llamacpp_detokenized"] else { return XCTFail("\(name): llamacpp_detokenized") }
            for (k, c) in try Self.vectors(name).enumerated() where detokenized[k] == .string(c.text) {
                XCTAssertEqual(try t.decode(c.ids), c.text, "\(name) decode of \(c.ids)")
                roundTrips += 1
            }
        }
        XCTAssertGreaterThan(roundTrips, 40 * Self.supported.count)
    }

    func testVocabularies() throws {
        let spm = try Self.tokenizer("llama-spm")
        XCTAssertEqual(spm.vocabularySize, 32000)
        XCTAssertEqual(spm.encode("Hello world", addSpecialTokens: true), [1, 15043, 3186])
        let phi = try Self.tokenizer("phi-3")
        XCTAssertEqual(phi.metaspace, MetaspaceRule(prepend: .everySegment, split: false))
        XCTAssertEqual(phi.eosTokenId, 32000)
        XCTAssertTrue(phi.isSpecialToken(32007))  // <|end|>: CONTROL
        XCTAssertFalse(phi.isSpecialToken(2))  // </s>: USER_DEFINED, as transformers
        let llama3 = try Self.tokenizer("llama-bpe")
        XCTAssertEqual(llama3.vocabularySize, 128256)
        XCTAssertEqual(llama3.preTokenizer, try PreTokenizer.llamaCpp(pre: "llama-bpe"))
        XCTAssertEqual(llama3.encode("Hello world", addSpecialTokens: true), [128000, 9906, 1917])
        XCTAssertTrue(PreTokenizer.llamaCppIgnoresMerges(pre: "llama-bpe"))
        XCTAssertFalse(PreTokenizer.llamaCppIgnoresMerges(pre: "qwen2"))
    }

    /// A vocabulary whose pre-tokenizer is not implemented (deepseek-llm's hand-written letter
    /// classes) or unknown is a QLoraError naming the file, the key and the value.
    func testUnimplementedPreTokenizerIsAnError() throws {
        let url = try Self.gguf("deepseek-llm")
        XCTAssertThrowsError(try BPETokenizer.load(gguf: url.path)) { e in
            guard case .unsupported(let m)? = e as? QLoraError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains(url.path) && m.contains("'tokenizer.ggml.pre'") && m.contains("'deepseek-llm'"), m)
        }
        var md = try GGUFFile(url: try Self.gguf("gpt-2")).metadata.entries.filter { $0.key != "tokenizer.ggml.pre" }
        md.append(GGUFKeyValue(key: "tokenizer.ggml.pre", value: .string("no-such-pre")))
        XCTAssertThrowsError(try BPETokenizer(ggufMetadata: GGUFMetadata(entries: md, path: "odd.gguf"))) { e in
            guard case .unsupported(let m)? = e as? QLoraError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.hasPrefix("odd.gguf: metadata 'tokenizer.ggml.pre'") && m.contains("'no-such-pre'"), m)
        }
    }
}
