import Foundation
import XCTest
@testable import QLoRA

/// A SentencePiece-style tokenizer.json (BPE with byte_fallback: Llama-2 / Mistral) against the
/// `tokenizers` library on transformers' own conversion of Mistral's tokenizer.model.v1
/// (Tests/Fixtures/sentencepiece, made once by make_tokenizer_json.py): in three spellings
/// (Metaspace prepend_scheme "always" / "first", the legacy Prepend+Replace normalizer), 64 hard
/// strings give its ids, tokens, offsets, ids with the post-processor's <s>, and decode; 17 id lists
/// decode as it decodes, with and without special tokens. Chat: the Llama-2 and Mixtral templates
/// give the ids of transformers' render tokenized by `tokenizers` and the assistant-only labels of
/// docs/chat-templates.md computed from `tokenizers`' offsets; the same through `qlora tokenize --chat`.
final class SentencePieceJSONTests: XCTestCase {
    static let dir = SentencePieceTests.dir
    static let stored = #""normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":false}"#
    /// The normalizer and pre_tokenizer of each variant, spelled as in json_cases.json "variants".
    static let variants: [String: String] = [
        "metaspace_always": stored,
        "metaspace_first": #""normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}"#,
        "normalizer": #""normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null"#,
    ]
    static let fileText: Result<String, Error> = Result {
        String(decoding: try Data(contentsOf: dir.appendingPathComponent("tokenizer.json")), as: UTF8.self)
    }

    static func bytes(variant: String) throws -> [UInt8] {
        let text = try fileText.get()
        guard text.contains(stored), let fields = variants[variant] else { throw QLoraError.invalidArgument("fixture tokenizer.json changed") }
        return Array(text.replacingOccurrences(of: stored, with: fields).utf8)
    }

    static func tokenizer(variant: String, config: [UInt8]? = nil) throws -> BPETokenizer {
        try BPETokenizer(tokenizerJSON: try bytes(variant: variant), file: "tokenizer.json(\(variant))", config: config)
    }

    static func load(_ name: String) throws -> JSONValue {
        let url = dir.appendingPathComponent(name)
        return try JSONValue.parse([UInt8](try Data(contentsOf: url)), file: url.path, field: "(root)")
    }

    func ints(_ v: JSONValue?) -> [Int] { GGUFTokenizerTests.ints(v) ?? [] }

    func testVariantsAreTheStoredFields() throws {
        let doc = try SentencePieceJSONTests.load("json_cases.json")
        for (name, fields) in SentencePieceJSONTests.variants {
            let parsed = try JSONValue.parse(Array("{\(fields)}".utf8), file: name, field: "(root)")
            XCTAssertEqual(parsed["normalizer"], doc["variants"]?[name]?["normalizer"], name)
            XCTAssertEqual(parsed["pre_tokenizer"], doc["variants"]?[name]?["pre_tokenizer"], name)
        }
    }

    func testEncodesAndDecodesAsTokenizers() throws {
        let doc = try SentencePieceJSONTests.load("json_cases.json")
        for variant in SentencePieceJSONTests.variants.keys.sorted() {
            let t = try SentencePieceJSONTests.tokenizer(variant: variant)
            guard case .array(let cases)? = doc["cases"]?[variant] else { return XCTFail("no cases for \(variant)") }
            var encoded = 0, decoded = 0
            for c in cases {
                let ids = ints(c["ids"])
                if case .string(let text)? = c["text"] {
                    let what = "\(variant) \(text.debugDescription)"
                    XCTAssertEqual(t.encode(text), ids, what)
                    XCTAssertEqual(c["tokens"], .array(t.encode(text).map { .string(t.token(of: $0) ?? "?") }), what)
                    XCTAssertEqual(t.encode(text, addSpecialTokens: true), ints(c["ids_with_special"]), what)
                    let (oids, spans) = t.encodeWithOffsets(text)
                    XCTAssertEqual(oids, ids, what)
                    XCTAssertEqual(c["offsets"], .array(spans.map { .array([.int($0.lowerBound), .int($0.upperBound)]) }), what)
                    encoded += 1
                }
                XCTAssertEqual(c["decoded"], .string(try t.decode(ids)), "\(variant) decode \(ids)")
                if let skip = c["decoded_skip_special"] {
                    XCTAssertEqual(skip, .string(try t.decode(ids, skipSpecialTokens: true)), "\(variant) decode skip \(ids)")
                }
                decoded += 1
            }
            XCTAssertEqual(encoded, 64)
            XCTAssertEqual(decoded, 81)
            // Streaming the encodings of the strings gives decode's text (leading space stripped).
            for c in cases where c["text"] != nil {
                let ids = ints(c["ids"])
                var stream = t.makeStreamingDecoder()
                var text = ""
                for id in ids { text += try stream.push(id) }
                text += stream.finish()
                XCTAssertEqual(c["decoded"], .string(text), "\(variant) stream \(ids)")
            }
            XCTAssertEqual(t.prefixIds, [1])
            XCTAssertEqual(t.vocabularySize, 32000)
        }
    }

    static func config(template: String) throws -> [UInt8] {
        let cfg: [String: Any] = ["chat_template": template, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"]
        return [UInt8](try JSONSerialization.data(withJSONObject: cfg, options: [.sortedKeys]))
    }

    static func template(_ name: String) throws -> String {
        let url = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/chat/templates/\(name).jinja")
        return String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }

    static func messages(_ v: JSONValue?) -> [ChatMessage] {
        guard case .array(let items)? = v else { return [] }
        return items.compactMap {
            guard case .string(let r)? = $0["role"], case .string(let c)? = $0["content"] else { return nil }
            return ChatMessage(role: r, content: c)
        }
    }

    func testChatIdsAndLabelsMatchTransformers() throws {
        guard case .array(let cases)? = try SentencePieceJSONTests.load("chat_cases.json")["cases"] else { return XCTFail() }
        var checked = 0, trained = 0
        var tokenizers: [String: BPETokenizer] = [:]
        var templates: [String: ChatTemplate] = [:]
        for c in cases {
            guard case .string(let name)? = c["template"], case .string(let variant)? = c["variant"] else { return XCTFail() }
            // The tokenizer_config.json holds Llama-2's template; Mixtral's is passed in (same special tokens).
            if tokenizers[variant] == nil {
                tokenizers[variant] = try SentencePieceJSONTests.tokenizer(variant: variant, config: try SentencePieceJSONTests.config(template: try SentencePieceJSONTests.template("llama2")))
            }
            if templates[name] == nil { templates[name] = try ChatTemplate(try SentencePieceJSONTests.template(name)) }
            let t = tokenizers[variant]!
            let e = try t.encodeChat(SentencePieceJSONTests.messages(c["messages"]), template: name == "llama2" ? nil : templates[name])
            let what = "\(name) \(variant) \(c["name"].map { "\($0)" } ?? "")"
            XCTAssertEqual(c["text"], .string(e.text), what)
            XCTAssertEqual(e.ids, ints(c["ids"]), what)
            XCTAssertEqual(e.labels, ints(c["labels"]), what)
            checked += 1
            trained += e.labels.filter { $0 != -100 }.count
        }
        XCTAssertEqual(checked, 21)
        XCTAssertGreaterThan(trained, 0)
    }

    func testTokenizeCommandChat() throws {
        guard case .array(let cases)? = try SentencePieceJSONTests.load("chat_cases.json")["cases"],
              let c = cases.first(where: { $0["template"] == .string("llama2") && $0["variant"] == .string("metaspace_always") && $0["name"] == .string("system_multi_turn") })
        else { return XCTFail("case missing") }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sptok-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(try SentencePieceJSONTests.bytes(variant: "metaspace_always")).write(to: dir.appendingPathComponent("tokenizer.json"))
        try Data(try SentencePieceJSONTests.config(template: try SentencePieceJSONTests.template("llama2"))).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let messages = SentencePieceJSONTests.messages(c["messages"])
        let stdin = "[" + messages.map { m -> String in
            let d = try! JSONSerialization.data(withJSONObject: ["role": m.role, "content": m.content])
            return String(decoding: d, as: UTF8.self)
        }.joined(separator: ",") + "]"
        func output(_ args: [String], stdin: String) throws -> JSONValue {
            let r = try CLIRunner.run(["tokenize"] + args, stdin: stdin)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "(root)")
        }
        let v = try output(["--tokenizer", dir.path, "--chat"], stdin: stdin)
        XCTAssertEqual(ints(v["ids"]), ints(c["ids"]))
        XCTAssertEqual(ints(v["labels"]), ints(c["labels"]))
        let plain = try output(["--tokenizer", dir.path], stdin: "  two  spaces ")
        // `tokenizers`' ids (json_cases.json), not sentencepiece's [259, 989, 28705, 10599, 28705]:
        // merges by rank differ from merges by score on runs of spaces.
        XCTAssertEqual(ints(plain["ids"]), [259, 10861, 259, 886, 2089, 28705])
    }

    func testUnsupportedPartsAreNamed() throws {
        let text = try SentencePieceJSONTests.fileText.get()
        func expect(_ from: String, _ to: String, _ fragments: [String]) {
            XCTAssertTrue(text.contains(from), from)
            let bytes = Array(text.replacingOccurrences(of: from, with: to).utf8)
            XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: bytes, file: "tj")) { e in
                for f in fragments { XCTAssertTrue("\(e)".contains(f), "\(e) lacks \(f)") }
            }
        }
        expect(#"{"type":"Strip","content":" ","start":1,"stop":0}"#, #"{"type":"Strip","content":" ","start":1,"stop":2}"#, ["tj", "decoder"])
        expect(#""prepend_scheme":"always""#, #""prepend_scheme":"sometimes""#, ["tj", "pre_tokenizer.prepend_scheme"])
        expect(#""normalizer":null"#, #""normalizer":{"type":"NFKC"}"#, ["tj", "normalizer"])
        expect(#""ignore_merges":false"#, #""ignore_merges":true"#, ["tj", "model.ignore_merges"])
        expect(#""pre_tokenizer":{"type":"Metaspace""#, #""pre_tokenizer":{"type":"ByteLevel""#, ["tj", "pre_tokenizer"])
    }
}
