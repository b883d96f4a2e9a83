import Foundation

/// A Hugging Face `tokenizer.json` (and `tokenizer_config.json`) from a GGUF file's gpt2 BPE
/// metadata, with the structure transformers 5.24 builds from the same metadata
/// (`AutoTokenizer.from_pretrained(dir, gguf_file=...)` then `save_pretrained`, as in
/// ../shared/reference/smollm2/tokenizer): BPE model (vocab by id, merges as pairs, no byte
/// fallback), CONTROL tokens as special added tokens (USER_DEFINED ones as non-special),
/// ByteLevel pre-tokenizer (no prefix space, GPT-2 regex) and decoder, and a TemplateProcessing
/// post-processor that adds BOS only when `tokenizer.ggml.add_bos_token` is true. Like
/// transformers, llama.cpp's own pre-tokenizer variants (`tokenizer.ggml.pre`, e.g. smollm's
/// digit isolation) are not carried over. A "llama" (SentencePiece BPE) vocabulary is written by
/// GGUFSentencePieceTokenizerJSON.swift; other tokenizer models give nil.
public enum GGUFTokenizerJSON {
    /// The tokenizer models written: gpt2 byte-level BPE and llama SentencePiece BPE.
    static func writes(_ md: GGUFMetadata) throws -> String? {
        guard md["tokenizer.ggml.model"] != nil else { return nil }
        let model = try md.string("tokenizer.ggml.model")
        return ["gpt2", "llama"].contains(model) ? model : nil
    }

    public static func json(_ md: GGUFMetadata) throws -> String? {
        guard let model = try writes(md) else { return nil }
        if model == "llama" { return try sentencePieceJSON(md) }
        // Validates the vocabulary the same way the tokenizer does (types, merges, ids).
        _ = try BPETokenizer(ggufMetadata: md)
        let tokens = try md.strings("tokenizer.ggml.tokens")
        var types = [Int](repeating: 1, count: tokens.count)
        if case let .array(a)? = md["tokenizer.ggml.token_type"] { for i in 0..<min(a.count, types.count) { types[i] = a[i].intValue ?? 1 } }
        var added: [JSONValue] = []
        for (id, t) in tokens.enumerated() where (types[id] == 3 || types[id] == 4) && !t.isEmpty {
            added.append(.object([("id", .int(id)), ("content", .string(t)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                                  ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(types[id] == 3))]))
        }
        var seen = Set<String>()
        var vocab: [(key: String, value: JSONValue)] = []
        for (id, t) in tokens.enumerated() where seen.insert(t).inserted { vocab.append((t, .int(id))) }
        let merges: [JSONValue] = md["tokenizer.ggml.merges"] == nil ? [] : try md.strings("tokenizer.ggml.merges").map { line in
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            return .array(parts.map { .string(String($0)) })
        }
        func id(_ key: String) throws -> Int? { md[key] == nil ? nil : try md.int(key) }
        let addBos = md["tokenizer.ggml.add_bos_token"] != nil ? try md.bool("tokenizer.ggml.add_bos_token") : false
        let bos = try id("tokenizer.ggml.bos_token_id")
        func sequence(_ s: String, _ type: Int) -> JSONValue { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(type))]))]) }
        var single = [sequence("A", 0)], pair = [sequence("A", 0), sequence("B", 1)]
        var specials: [(key: String, value: JSONValue)] = []
        if addBos, let bos {
            let b = JSONValue.object([("SpecialToken", .object([("id", .string(tokens[bos])), ("type_id", .int(0))]))])
            single.insert(b, at: 0)
            pair.insert(b, at: 0)
            specials.append((tokens[bos], .object([("id", .string(tokens[bos])), ("ids", .array([.int(bos)])), ("tokens", .array([.string(tokens[bos])]))])))
        }
        let byteLevel: [(key: String, value: JSONValue)] = [("trim_offsets", .bool(true)), ("use_regex", .bool(true))]
        let root = JSONValue.object([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null), ("added_tokens", .array(added)),
            ("normalizer", .null),
            ("pre_tokenizer", .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false))] + byteLevel)),
            ("post_processor", .object([("type", .string("TemplateProcessing")), ("single", .array(single)), ("pair", .array(pair)),
                                        ("special_tokens", .object(specials))])),
            ("decoder", .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true))] + byteLevel)),
            ("model", .object([("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .string("")),
                               ("end_of_word_suffix", .string("")), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                               ("ignore_merges", .bool(false)), ("vocab", .object(vocab)), ("merges", .array(merges))])),
        ])
        return root.pythonDumps()
    }

    /// The matching `tokenizer_config.json`: special token strings and the chat template.
    public static func config(_ md: GGUFMetadata) throws -> String? {
        guard try writes(md) != nil else { return nil }
        let tokens = try md.strings("tokenizer.ggml.tokens")
        var members: [(key: String, value: JSONValue)] = [("backend", .string("tokenizers")), ("tokenizer_class", .string("TokenizersBackend"))]
        for (field, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id"), ("unk_token", "unknown_token_id")]
        where md["tokenizer.ggml." + key] != nil {
            let i = try md.int("tokenizer.ggml." + key)
            guard i >= 0, i < tokens.count else {
                throw QLoraError.malformedFile(file: md.path, field: "metadata 'tokenizer.ggml.\(key)'", reason: "id \(i) is outside the vocabulary 0..<\(tokens.count)")
            }
            members.append((field, .string(tokens[i])))
        }
        if md["tokenizer.chat_template"] != nil { members.append(("chat_template", .string(try md.string("tokenizer.chat_template")))) }
        return JSONValue.object(members).sortedKeys().pythonDumps(indent: 2) + "\n"
    }
}
