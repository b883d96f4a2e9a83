import Foundation
import XCTest
@testable import QLoRA

/// The tokenizer's other pieces against Hugging Face `tokenizers` 0.23.3 on 200 random texts
/// (Fixtures/tokenizer_cases.json, made by Fixtures/make_tokenizer_cases.py; no Python at test
/// time): SmolLM2's vocabulary under the Llama 3 and Qwen 2 split regexes, Digits, ByteLevel's
/// add_prefix_space, every Split behavior (and inverted), and a small tokenizer with "a b"
/// merges, ignore_merges, a TemplateProcessing post-processor and added tokens with
/// single_word / lstrip / rstrip / normalized flags, overlapping added tokens.
final class TokenizerVariantTests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer_cases.json")

    func load() throws -> JSONValue {
        guard let d = FileManager.default.contents(atPath: TokenizerVariantTests.fixture.path) else {
            throw QLoraError.io(file: TokenizerVariantTests.fixture.path, reason: "fixture missing")
        }
        return try JSONValue.parse([UInt8](d), file: "tokenizer_cases.json", field: "(root)")
    }

    func strings(_ v: JSONValue?) -> [String] {
        guard case .array(let a)? = v else { return [] }
        return a.map { if case .string(let s) = $0 { return s } else { return "" } }
    }

    func idLists(_ v: JSONValue?) -> [[Int]] {
        guard case .array(let a)? = v else { return [] }
        return a.map { row in
            guard case .array(let r) = row else { return [] }
            return r.map { if case .int(let i) = $0 { return i } else { return -1 } }
        }
    }

    func testPreTokenizerVariantsMatchTokenizers() throws {
        let f = try load()
        let smol = try TokenizerTests.tokenizer.get()
        let texts = strings(f["texts"])
        XCTAssertEqual(texts.count, 200)
        let names = f["variants"]!.keys
        XCTAssertEqual(names.count, 16)
        for name in names {
            let pre = try PreTokenizer.parse(f["variants"]![name]!, file: "tokenizer_cases.json", path: "variants.\(name)")
            let t = smol.withPreTokenizer(pre)
            let expected = idLists(f["ids"]?[name])
            XCTAssertEqual(expected.count, texts.count)
            var failures = 0
            for (text, ids) in zip(texts, expected) where failures < 3 {
                let got = t.encode(text)
                if got != ids { failures += 1 }
                XCTAssertEqual(got, ids, "\(name): \(text.debugDescription)")
            }
        }
        // The emulation of llama.cpp's smollm pre-tokenizer is that Split + ByteLevel.
        XCTAssertEqual(try PreTokenizer.llamaCpp(pre: "smollm"),
                       try PreTokenizer.parse(f["variants"]!["llamacpp_smollm"]!, file: "f", path: "p"))
    }

    func testSmallTokenizerMatchesTokenizers() throws {
        let f = try load()
        let json = try encodeJSON(f["small_tokenizer"]!)
        let t = try BPETokenizer(tokenizerJSON: Array(json.utf8))
        let texts = strings(f["small_texts"])
        let expected = idLists(f["small_ids"])
        let skipped = strings(f["small_decoded_skip_special"])
        XCTAssertEqual(texts.count, 111)
        for (k, text) in texts.enumerated() {
            XCTAssertEqual(t.encode(text), expected[k], "small: \(text.debugDescription)")
            XCTAssertEqual(try t.decode(expected[k], skipSpecialTokens: true), skipped[k], "small decode: \(expected[k])")
        }
        let withSpecial = idLists(f["small_ids_with_special_tokens_last11"])
        for (k, text) in texts.suffix(11).enumerated() {
            XCTAssertEqual(t.encode(text, addSpecialTokens: true), withSpecial[k], "small with specials: \(text.debugDescription)")
        }
    }

    func testRejectsWhatItCannotRead() throws {
        let f = try load()
        let good = try encodeJSON(f["small_tokenizer"]!)
        func attempt(_ text: String) -> QLoraError? {
            do { _ = try BPETokenizer(tokenizerJSON: Array(text.utf8), file: "t.json"); return nil }
            catch { return error as? QLoraError }
        }
        XCTAssertNil(attempt(good))
        func expect(_ text: String, _ contains: String, line: UInt = #line) {
            guard let e = attempt(text) else { return XCTFail("accepted", line: line) }
            XCTAssertTrue(e.description.contains(contains), "\(e)", line: line)
        }
        expect(String(good.dropLast()), "malformed file t.json: tokenizer.json: invalid JSON")
        expect(good.replacingOccurrences(of: "\"type\":\"BPE\"", with: "\"type\":\"WordPiece\""),
               "t.json: model.type: tokenizer model 'WordPiece'")
        expect(good.replacingOccurrences(of: "\"pre_tokenizer\":{\"type\":\"ByteLevel\"", with: "\"pre_tokenizer\":{\"type\":\"Metaspace\""),
               "t.json: pre_tokenizer.type: pre-tokenizer 'Metaspace'")
        expect(good.replacingOccurrences(of: "\"pre_tokenizer\":{\"type\":\"ByteLevel\"", with: "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\",\"t\":\"ByteLevel\""),
               "pre_tokenizer.pattern.Regex: split regex")
        expect(good.replacingOccurrences(of: "\"h e\"", with: "\"h q9\""), "model.merges[1]: token \"q9\" is not in the vocabulary")
        expect(good.replacingOccurrences(of: "\"Ġt he\"", with: "\"Ġt Ġt\""), "model.merges[2]: merged token \"ĠtĠt\" is not in the vocabulary")
        expect(good.replacingOccurrences(of: "\"vocab\":{", with: "\"vocab\":{\"zz\":\"1\","), "model.vocab[\"zz\"]: expected a non-negative integer id")
        expect(good.replacingOccurrences(of: "\"normalizer\":null", with: "\"normalizer\":{\"type\":\"NFC\"}"), "normalizer 'NFC'")
        expect(good.replacingOccurrences(of: "\"decoder\":{\"type\":\"ByteLevel\"", with: "\"decoder\":{\"type\":\"WordPiece\""), "decoder.type: decoder 'WordPiece'")
        expect("[1]", "(root): expected an object")
        XCTAssertThrowsError(try PreTokenizer.llamaCpp(pre: "deepseek-llm"))
        XCTAssertThrowsError(try BPETokenizer.load(tokenizerJSON: "/nonexistent/tokenizer.json")) { e in
            XCTAssertEqual(e as? QLoraError, .io(file: "/nonexistent/tokenizer.json", reason: "cannot read the file"))
        }
    }

    /// JSON text of a value (compact, keys in file order).
    func encodeJSON(_ v: JSONValue) throws -> String {
        switch v {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(_, let text): return text
        case .string(let s):
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        case .array(let a): return "[" + (try a.map(encodeJSON)).joined(separator: ",") + "]"
        case .object(let m): return "{" + (try m.map { "\(try encodeJSON(.string($0.key))):\(try encodeJSON($0.value))" }).joined(separator: ",") + "}"
        }
    }
}
