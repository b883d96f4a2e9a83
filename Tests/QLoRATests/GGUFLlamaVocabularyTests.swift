import Foundation
import XCTest
@testable import QLoRA

/// A GGUF "llama" (SentencePiece) vocabulary read as transformers reads it: the metadata llama.cpp's
/// converter writes for Mistral's tokenizer.model.v1 (rebuilt here from the model file, as
/// Tests/Fixtures/gguf-llama-vocab/make_fixtures.py wrote it) against transformers'
/// AutoTokenizer.from_pretrained(gguf_file=...) on that GGUF (cases.json): the derived merges
/// (count, first 50, SHA-256 of all), ids / tokens / decode of 72 strings, 17 id lists' decode,
/// 7 chats' rendered text, ids and assistant-only labels; hostile metadata names the key.
final class GGUFLlamaVocabularyTests: XCTestCase {
    static let dir = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/gguf-llama-vocab")

    static let doc: Result<JSONValue, Error> = Result {
        let url = dir.appendingPathComponent("cases.json")
        return try JSONValue.parse([UInt8](try Data(contentsOf: url)), file: url.path, field: "(root)")
    }

    static func template(_ name: String) throws -> String {
        try String(contentsOf: Reference.projectRoot.appendingPathComponent("Tests/Fixtures/chat/templates/\(name).jinja"), encoding: .utf8)
    }

    /// The tokenizer metadata of make_fixtures.py's GGUF.
    static func metadata() throws -> [(String, GGUFValue)] {
        let sp = try SentencePieceTests.model.get()
        return [
            ("general.architecture", .string("llama")),
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.pre", .string("default")),
            ("tokenizer.ggml.tokens", .array(.string(sp.pieces))),
            ("tokenizer.ggml.scores", .array(.float32(sp.scores))),
            ("tokenizer.ggml.token_type", .array(.int32(sp.types.map { Int32($0) }))),
            ("tokenizer.ggml.bos_token_id", .uint32(1)),
            ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.unknown_token_id", .uint32(0)),
            ("tokenizer.ggml.add_bos_token", .bool(true)),
            ("tokenizer.ggml.add_eos_token", .bool(false)),
            ("tokenizer.ggml.add_space_prefix", .bool(true)),
            ("tokenizer.chat_template", .string(try template("llama2"))),
        ]
    }

    static func make(_ kv: [(String, GGUFValue)]) throws -> BPETokenizer {
        try BPETokenizer(ggufMetadata: GGUFMetadata(entries: kv.map { GGUFKeyValue(key: $0.0, value: $0.1) }, path: "tiny-mistral-vocab.gguf"))
    }

    static let tokenizer: Result<BPETokenizer, Error> = Result { try make(try metadata()) }

    static func items(_ key: String) throws -> [JSONValue] {
        guard case .array(let a)? = try doc.get()[key] else { throw QLoraError.malformedFile(file: "cases.json", field: key, reason: "missing") }
        return a
    }

    func ints(_ v: JSONValue?) -> [Int] { GGUFTokenizerTests.ints(v) ?? [] }

    func testBuildsTheTokenizerTransformersBuilds() throws {
        let t = try Self.tokenizer.get()
        let backend = try XCTUnwrap(try Self.doc.get()["backend"])
        XCTAssertEqual(t.vocabularySize, 32000)
        XCTAssertEqual(t.bosTokenId, 1)
        XCTAssertEqual(t.eosTokenId, 2)
        XCTAssertNil(t.padTokenId)
        XCTAssertEqual(t.prefixIds, [1])  // TemplateProcessing "<s> $A"
        XCTAssertEqual(t.suffixIds, [])
        XCTAssertEqual(t.chatTemplate, try Self.template("llama2"))
        // transformers' added tokens: <unk> (the unknown token), <s>, </s>, all special.
        guard case .array(let added)? = backend["added_tokens"] else { return XCTFail("no added_tokens") }
        XCTAssertEqual(t.addedTokens.map(\.id).sorted(), added.compactMap { if case .int(let i)? = $0["id"] { return i } else { return nil } })
        XCTAssertEqual((0..<t.vocabularySize).filter { t.isSpecialToken($0) }, [0, 1, 2])
        XCTAssertEqual(backend["pre_tokenizer"]?["prepend_scheme"], .string("first"))
        XCTAssertEqual(t.metaspace, MetaspaceRule(prepend: .first, split: false))
        XCTAssertEqual(t.decoderStripsLeadingSpaces, 1)
        XCTAssertEqual(backend["model"]?["fuse_unk"], .bool(true))
        XCTAssertEqual(backend["model"]?["byte_fallback"], .bool(true))
        XCTAssertEqual(t.specialTokenVariables, ["bos_token": "<s>", "eos_token": "</s>"])
    }

    /// generate_merges' order: score, then the halves' lengths, ties by token then by halves' ids.
    func testDerivedMergesEqualTransformers() throws {
        let sp = try SentencePieceTests.model.get()
        var ids: [String: Int] = [:]
        for (i, p) in sp.pieces.enumerated() { ids[p] = i }
        let merges = BPETokenizer.derivedMerges(tokens: sp.pieces, scores: sp.scores, idsByToken: ids)
        let ref = try XCTUnwrap(try Self.doc.get()["merges"])
        XCTAssertEqual(.int(merges.count), ref["count"])
        guard case .array(let first)? = ref["first"] else { return XCTFail("no merges.first") }
        XCTAssertEqual(first.count, 50)
        for (k, pair) in first.enumerated() {
            XCTAssertEqual(pair, .array([.string(merges[k].0), .string(merges[k].1)]), "merge \(k)")
        }
        var sha = SHA256()
        for (a, b) in merges { sha.update(Array("\(a) \(b)\n".utf8)) }
        XCTAssertEqual(.string(sha.finalize()), ref["sha256"])
        // A tiny vocabulary worked by hand: "ab" (score -1) before "abc" (score -2); for "abc" the
        // splits "a"+"bc" and "ab"+"c" tie on score and are ordered by length (longer left first).
        let tokens = ["a", "b", "c", "bc", "ab", "abc"]
        let tiny = BPETokenizer.derivedMerges(tokens: tokens, scores: [0, 0, 0, -3, -1, -2],
                                              idsByToken: Dictionary(uniqueKeysWithValues: tokens.enumerated().map { ($1, $0) }))
        XCTAssertEqual(tiny.map { "\($0.0) \($0.1)" }, ["a b", "ab c", "a bc", "b c"])
    }

    func testEncodesAndDecodesAsTransformers() throws {
        let t = try Self.tokenizer.get()
        let cases = try Self.items("cases")
        XCTAssertEqual(cases.count, 72)
        var llamaCppDiffers = 0
        for c in cases {
            guard case .string(let text)? = c["text"] else { XCTFail("bad case \(c)"); continue }
            let ids = ints(c["ids"])
            XCTAssertEqual(t.encode(text), ids, text.debugDescription)
            XCTAssertEqual(.array(ids.map { .string(t.token(of: $0) ?? "?") }), c["tokens"], text.debugDescription)
            XCTAssertEqual(t.encode(text, addSpecialTokens: true), ints(c["ids_with_special"]), text.debugDescription)
            XCTAssertEqual(.string(try t.decode(ids)), c["decoded"], "decode \(ids)")
            XCTAssertEqual(.string(try t.decode(ids, skipSpecialTokens: true)), c["decoded_skip_special"], "decode \(ids) skipping special")
            var stream = t.makeStreamingDecoder()
            var streamed = ""
            for id in ids { streamed += try stream.push(id) }
            XCTAssertEqual(streamed + stream.finish(), try t.decode(ids), "streamed \(ids)")
            if c["ids_llamacpp"] != nil { llamaCppDiffers += 1 }
        }
        XCTAssertEqual(llamaCppDiffers, 13)  // documented in docs/tokenizers.md
        let decodes = try Self.items("decodes")
        XCTAssertEqual(decodes.count, 17)
        for d in decodes {
            let ids = ints(d["ids"])
            XCTAssertEqual(.string(try t.decode(ids)), d["decoded"], "decode \(ids)")
            XCTAssertEqual(.string(try t.decode(ids, skipSpecialTokens: true)), d["decoded_skip_special"], "decode \(ids) skipping special")
        }
        XCTAssertThrowsError(try t.decode([32000])) { XCTAssertTrue("\($0)".contains("32000")) }
    }

    func testChatsRenderAndLabelAsTransformers() throws {
        let base = try Self.tokenizer.get()
        let chats = try Self.items("chats")
        XCTAssertEqual(chats.count, 7)
        for c in chats {
            guard case .string(let name)? = c["template"], case .array(let msgs)? = c["messages"] else { XCTFail("bad chat \(c)"); continue }
            func str(_ v: JSONValue?) -> String { if case .string(let s)? = v { return s } else { return "" } }
            let messages = msgs.map { ChatMessage(role: str($0["role"]), content: str($0["content"])) }
            let e = try base.encodeChat(messages, template: try ChatTemplate(try Self.template(name)))
            let label = "\(name) \(str(c["name"]))"
            XCTAssertEqual(.string(e.text), c["text"], label)
            XCTAssertEqual(e.ids, ints(c["ids"]), label)
            XCTAssertEqual(e.labels, ints(c["labels"]), label)
        }
    }

    func testHostileMetadataNamesTheKey() throws {
        let kv = try Self.metadata()
        func with(_ key: String, _ value: GGUFValue?) -> [(String, GGUFValue)] {
            var out = kv.filter { $0.0 != key }
            if let value { out.append((key, value)) }
            return out
        }
        func expect(_ kv: [(String, GGUFValue)], _ needles: [String], line: UInt = #line) {
            XCTAssertThrowsError(try Self.make(kv), line: line) { e in
                XCTAssertTrue(e is QLoraError, "\(e) is not a QLoraError", line: line)
                for n in needles { XCTAssertTrue("\(e)".contains(n), "\(e) lacks \(n)", line: line) }
            }
        }
        let n = 32000
        expect(with("tokenizer.ggml.scores", nil), ["tokenizer.ggml.scores", "missing"])
        expect(with("tokenizer.ggml.scores", .array(.float32([Float](repeating: 0, count: n - 1)))), ["tokenizer.ggml.scores", "32000", "31999"])
        expect(with("tokenizer.ggml.scores", .array(.string(["x"]))), ["tokenizer.ggml.scores"])
        expect(with("tokenizer.ggml.scores", .float32(0)), ["tokenizer.ggml.scores"])
        var nan = [Float](repeating: 0, count: n); nan[7] = .nan
        expect(with("tokenizer.ggml.scores", .array(.float32(nan))), ["tokenizer.ggml.scores", "element 7"])
        var types = [Int32](repeating: 1, count: n); types[5] = 7
        expect(with("tokenizer.ggml.token_type", .array(.int32(types))), ["tokenizer.ggml.token_type", "element 5"])
        types[5] = -1
        expect(with("tokenizer.ggml.token_type", .array(.int32(types))), ["tokenizer.ggml.token_type", "element 5"])
        expect(with("tokenizer.ggml.token_type", .array(.int32([1, 1]))), ["tokenizer.ggml.token_type", "32000"])
        expect(with("tokenizer.ggml.token_type", .array(.string(["1"]))), ["tokenizer.ggml.token_type"])
        expect(with("tokenizer.ggml.bos_token_id", .uint32(32000)), ["tokenizer.ggml.bos_token_id", "32000"])
        expect(with("tokenizer.ggml.eos_token_id", .int32(-1)), ["tokenizer.ggml.eos_token_id"])
        expect(with("tokenizer.ggml.unknown_token_id", .string("0")), ["tokenizer.ggml.unknown_token_id"])
        expect(with("tokenizer.ggml.padding_token_id", .uint64(1 << 40)), ["tokenizer.ggml.padding_token_id"])
        expect(with("tokenizer.ggml.add_bos_token", .uint8(1)), ["tokenizer.ggml.add_bos_token"])
        expect(with("tokenizer.ggml.tokens", .array(.string([]))), ["tokenizer.ggml.tokens"])
        expect(with("tokenizer.ggml.tokens", .array(.int32([1]))), ["tokenizer.ggml.tokens"])
        expect(with("tokenizer.ggml.merges", .array(.string(["\u{2581} t x"]))), ["tokenizer.ggml.merges", "element 0"])
        expect(with("tokenizer.ggml.merges", .array(.string(["zz qq"]))), ["tokenizer.ggml.merges"])
        expect(with("tokenizer.chat_template", .int32(3)), ["tokenizer.chat_template"])
        expect(with("tokenizer.ggml.pre", .string("llama3")), ["tokenizer.ggml.pre", "llama3"])
        expect(with("general.architecture", .string("gemma2")), ["general.architecture", "gemma2"])
        // Optional keys may be absent: no types (no special tokens but bos/eos/unk), no BOS flag (added).
        let bare = try Self.make(with("tokenizer.ggml.token_type", nil).filter { $0.0 != "tokenizer.ggml.add_bos_token" })
        XCTAssertEqual(bare.encode("Hello world", addSpecialTokens: true), [1, 22557, 1526])
        let noBos = try Self.make(with("tokenizer.ggml.add_bos_token", .bool(false)) + [("tokenizer.ggml.add_eos_token", .bool(true))])
        XCTAssertEqual(noBos.encode("Hello world", addSpecialTokens: true), [22557, 1526, 2])
    }

    /// The GGUF file itself: tokenizer metadata, and with `model` a tiny random Llama (F32,
    /// hidden 64, one layer, tied embeddings) that `qlora generate / chat / train` run.
    static func writeGGUF(to url: URL, model: Bool) throws {
        try writeTinyLlama(to: url, tokenizer: try metadata(), vocabulary: 32000, model: model)
    }

    /// A GGUF with the tokenizer metadata `tokenizer` (of `vocabulary` tokens) and, with `model`,
    /// the tiny random Llama described above.
    static func writeTinyLlama(to url: URL, tokenizer: [(String, GGUFValue)], vocabulary vocab: Int, model: Bool = true) throws {
        var b = GGUFBuilder()
        let hidden = 64, ff = 128, heads = 2
        if model {
            b.kv("llama.embedding_length", .uint32(UInt32(hidden)))
            b.kv("llama.feed_forward_length", .uint32(UInt32(ff)))
            b.kv("llama.block_count", .uint32(1))
            b.kv("llama.attention.head_count", .uint32(UInt32(heads)))
            b.kv("llama.attention.head_count_kv", .uint32(UInt32(heads)))
            b.kv("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
            b.kv("llama.context_length", .uint32(256))
        }
        for (k, v) in tokenizer { b.kv(k, v) }
        if model {
            var rng = SplitMix64(seed: 5)
            func random(_ n: Int, scale: Float) -> [UInt8] {
                GGUFBuilder.f32((0..<n).map { _ in (Float(rng.next() % 2001) / 1000 - 1) * scale })
            }
            let ones = GGUFBuilder.f32([Float](repeating: 1, count: hidden))
            b.tensor("token_embd.weight", ne: [UInt64(hidden), UInt64(vocab)], type: 0, bytes: random(hidden * vocab, scale: 0.5))
            b.tensor("output_norm.weight", ne: [UInt64(hidden)], type: 0, bytes: ones)
            b.tensor("blk.0.attn_norm.weight", ne: [UInt64(hidden)], type: 0, bytes: ones)
            b.tensor("blk.0.ffn_norm.weight", ne: [UInt64(hidden)], type: 0, bytes: ones)
            for name in ["attn_q", "attn_k", "attn_v", "attn_output"] {
                b.tensor("blk.0.\(name).weight", ne: [UInt64(hidden), UInt64(hidden)], type: 0, bytes: random(hidden * hidden, scale: 0.1))
            }
            b.tensor("blk.0.ffn_gate.weight", ne: [UInt64(hidden), UInt64(ff)], type: 0, bytes: random(hidden * ff, scale: 0.1))
            b.tensor("blk.0.ffn_up.weight", ne: [UInt64(hidden), UInt64(ff)], type: 0, bytes: random(hidden * ff, scale: 0.1))
            b.tensor("blk.0.ffn_down.weight", ne: [UInt64(ff), UInt64(hidden)], type: 0, bytes: random(hidden * ff, scale: 0.1))
        }
        try b.build().write(to: url)
    }
}
