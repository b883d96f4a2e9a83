import Foundation

/// The `tokenizer.json` transformers 5.24 saves for a GGUF "llama" (SentencePiece BPE) vocabulary
/// (`AutoTokenizer.from_pretrained(dir, gguf_file=...)` then `save_pretrained`; checked against
/// that for llama.cpp's ggml-vocab-llama-spm.gguf and ggml-vocab-phi-3.gguf by
/// GGUFTokenizerExportTests): the tokenizer GGUFLlamaVocabulary.swift builds, written out —
/// BPE with byte fallback and fuse_unk, vocab {token: id} (the last of duplicate tokens wins),
/// merges from the file or derived from tokens and scores, the special (CONTROL, bos / eos / unk /
/// pad) and USER_DEFINED tokens as added tokens, Metaspace("▁", "first", no split) (a "phi3" file:
/// the normalizer Prepend("▁") + Replace(" ", "▁")), the Replace / ByteFallback / Fuse / Strip
/// decoder, and LlamaTokenizer's TemplateProcessing (BOS / EOS per add_bos_token / add_eos_token).
extension GGUFTokenizerJSON {
    static func sentencePieceJSON(_ md: GGUFMetadata) throws -> String {
        let t = try BPETokenizer(ggufMetadata: md)  // validates everything the JSON is made of
        let tokens = try BPETokenizer.ggufTokens(md)
        let scores = try BPETokenizer.ggufScores(md, count: tokens.count)
        var idsByToken: [String: Int] = [:]
        for (id, tok) in tokens.enumerated() { idsByToken[tok] = id }
        let merges = md["tokenizer.ggml.merges"] != nil ? try BPETokenizer.ggufMerges(md)
            : BPETokenizer.derivedMerges(tokens: tokens, scores: scores, idsByToken: idsByToken)
        // transformers' {token: id}: the last of identical tokens wins. Byte-exact, since Swift's
        // String equality would also join canonically equivalent tokens ("ί" U+03AF, U+1F77).
        var lastId: [[UInt8]: Int] = [:]
        for (id, tok) in tokens.enumerated() { lastId[Array(tok.utf8)] = id }
        let vocab: [(key: String, value: JSONValue)] = tokens.enumerated().filter { lastId[Array($0.element.utf8)] == $0.offset }
            .map { ($0.element, .int($0.offset)) }
        let added: [JSONValue] = t.addedTokens.sorted { $0.id < $1.id }.map { a in
            .object([("id", .int(a.id)), ("content", .string(a.content)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                     ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(a.special))])
        }
        let replacement = JSONValue.string("\u{2581}")
        let normalizer: JSONValue, preTokenizer: JSONValue
        if t.metaspace?.prepend == .everySegment {
            normalizer = .object([("type", .string("Sequence")), ("normalizers", .array([
                .object([("type", .string("Prepend")), ("prepend", replacement)]),
                .object([("type", .string("Replace")), ("pattern", .object([("String", .string(" "))])), ("content", replacement)]),
            ]))])
            preTokenizer = .null
        } else {
            normalizer = .null
            preTokenizer = .object([("type", .string("Metaspace")), ("replacement", replacement), ("prepend_scheme", .string("first")),
                                    ("split", .bool(false))])
        }
        let decoder = JSONValue.object([("type", .string("Sequence")), ("decoders", .array([
            .object([("type", .string("Replace")), ("pattern", .object([("String", replacement)])), ("content", .string(" "))]),
            .object([("type", .string("ByteFallback"))]),
            .object([("type", .string("Fuse"))]),
            .object([("type", .string("Strip")), ("content", .string(" ")), ("start", .int(1)), ("stop", .int(0))]),
        ]))])
        let root = JSONValue.object([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null), ("added_tokens", .array(added)),
            ("normalizer", normalizer), ("pre_tokenizer", preTokenizer),
            ("post_processor", llamaTemplateProcessing(t, tokens: tokens)), ("decoder", decoder),
            ("model", .object([("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                               ("end_of_word_suffix", .null), ("fuse_unk", .bool(true)), ("byte_fallback", .bool(true)),
                               ("ignore_merges", .bool(false)), ("vocab", .object(vocab)),
                               ("merges", .array(merges.map { .array([.string($0.0), .string($0.1)]) }))])),
        ])
        return root.pythonDumps()
    }

    /// LlamaTokenizer's post-processor: single "[bos:0] $A:0 [eos:0]", pair that followed by
    /// "[bos:1] $B:1 [eos:1]", with the BOS / EOS the tokenizer adds.
    static func llamaTemplateProcessing(_ t: BPETokenizer, tokens: [String]) -> JSONValue {
        func special(_ id: Int, _ type: Int) -> JSONValue {
            .object([("SpecialToken", .object([("id", .string(tokens[id])), ("type_id", .int(type))]))])
        }
        func sequence(_ s: String, _ type: Int) -> JSONValue { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(type))]))]) }
        func part(_ s: String, _ type: Int) -> [JSONValue] { t.prefixIds.map { special($0, type) } + [sequence(s, type)] + t.suffixIds.map { special($0, type) } }
        var specials: [(key: String, value: JSONValue)] = []
        for id in t.prefixIds + t.suffixIds where !specials.contains(where: { $0.key == tokens[id] }) {
            specials.append((tokens[id], .object([("id", .string(tokens[id])), ("ids", .array([.int(id)])), ("tokens", .array([.string(tokens[id])]))])))
        }
        return .object([("type", .string("TemplateProcessing")), ("single", .array(part("A", 0))), ("pair", .array(part("A", 0) + part("B", 1))),
                        ("special_tokens", .object(specials))])
    }
}
