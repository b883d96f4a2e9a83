import Foundation

/// A byte-level BPE tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, as llama.cpp builds
/// it: `tokenizer.ggml.model` "gpt2", the vocabulary by position in `tokens`, merges by rank,
/// CONTROL (3) and USER_DEFINED (4) tokens matched before the pre-tokenizer (control ones are
/// special), and llama.cpp's pre-tokenizer for `tokenizer.ggml.pre` (LlamaCppPreTokenizers.swift;
/// "default" when absent, as llama.cpp), with its `ignore_merges` for the llama3 names. Bytes without a token are
/// dropped (llama.cpp's BPE has no byte fallback; transformers' conversion drops them too).
extension BPETokenizer {
    /// GGUF token types (llama.cpp's llama_token_type).
    enum GGUFTokenType: Int {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    public static func load(gguf path: String) throws -> BPETokenizer {
        try BPETokenizer(ggufMetadata: try GGUFFile(url: URL(fileURLWithPath: path)).metadata)
    }

    public init(ggufMetadata md: GGUFMetadata) throws {
        let file = md.path
        let kind = try md.string("tokenizer.ggml.model")
        if kind == "llama" { try self.init(llamaVocabulary: md); return }
        guard kind == "gpt2" else {
            throw QLoraError.unsupported("\(file): metadata 'tokenizer.ggml.model': tokenizer model '\(kind)' (implemented: gpt2 byte-level BPE, llama SentencePiece BPE)")
        }
        let tokens = try BPETokenizer.ggufTokens(md)
        let types = try BPETokenizer.ggufTokenTypes(md, count: tokens.count)
        var idsByToken: [String: Int] = [:]
        idsByToken.reserveCapacity(tokens.count)
        var added: [AddedToken] = []
        for (id, t) in tokens.enumerated() {
            if idsByToken[t] == nil { idsByToken[t] = id }  // llama.cpp keeps the first of duplicates
            let type = GGUFTokenType(rawValue: types[id])!
            if (type == .control || type == .userDefined) && !t.isEmpty {
                added.append(AddedToken(id: id, content: t, singleWord: false, lstrip: false, rstrip: false,
                                        normalized: false, special: type == .control))
            }
        }
        let merges = md["tokenizer.ggml.merges"] == nil ? [] : try BPETokenizer.ggufMerges(md)
        func tokenId(_ key: String) throws -> Int? { try BPETokenizer.ggufTokenId(md, key, vocabulary: tokens.count) }
        func flag(_ key: String, _ fallback: Bool) throws -> Bool { try BPETokenizer.ggufFlag(md, key, default: fallback) }
        let bos = try tokenId("tokenizer.ggml.bos_token_id")
        let eos = try tokenId("tokenizer.ggml.eos_token_id")
        let pad = try tokenId("tokenizer.ggml.padding_token_id")
        let pre = md["tokenizer.ggml.pre"] == nil ? "default" : try md.string("tokenizer.ggml.pre")
        guard PreTokenizer.llamaCppGroups[pre] != nil else {
            throw QLoraError.unsupported("\(file): metadata 'tokenizer.ggml.pre': llama.cpp pre-tokenizer '\(pre)' is not implemented (implemented: \(PreTokenizer.llamaCppNames.joined(separator: ", ")))")
        }
        let preTokenizer = try PreTokenizer.llamaCpp(pre: pre)
        // llama.cpp adds BOS for gpt2 vocabularies unless add_bos_token says otherwise.
        let addBos = try flag("tokenizer.ggml.add_bos_token", true)
        let addEos = try flag("tokenizer.ggml.add_eos_token", false)
        var template: String? = nil
        if md["tokenizer.chat_template"] != nil { template = try md.string("tokenizer.chat_template") }
        try self.init(parts: BPETokenizerParts(
            file: file, tokenStrings: tokens.map { Optional($0) }, idsByToken: idsByToken, addedTokens: added,
            merges: merges, mergesField: "metadata 'tokenizer.ggml.merges'", ignoreMerges: PreTokenizer.llamaCppIgnoresMerges(pre: pre), fuseUnknown: false,
            unknownId: nil, preTokenizer: preTokenizer, bosTokenId: bos, eosTokenId: eos, padTokenId: pad,
            prefixIds: addBos ? bos.map { [$0] } ?? [] : [], suffixIds: addEos ? eos.map { [$0] } ?? [] : [],
            chatTemplate: template))
    }

    /// `tokenizer.ggml.tokens`: the vocabulary by id, non-empty and within `idLimit`.
    static func ggufTokens(_ md: GGUFMetadata) throws -> [String] {
        let key = "tokenizer.ggml.tokens"
        func bad(_ reason: String) -> QLoraError { .malformedFile(file: md.path, field: "metadata '\(key)'", reason: reason) }
        let tokens = try md.strings(key)
        guard !tokens.isEmpty else { throw bad("empty vocabulary") }
        guard tokens.count <= BPETokenizer.idLimit else {
            throw bad("\(tokens.count) tokens, more than the \(BPETokenizer.idLimit) a tokenizer may have")
        }
        return tokens
    }

    /// A token id the metadata may give (`tokenizer.ggml.bos_token_id`, …): nil when absent, else inside the vocabulary.
    static func ggufTokenId(_ md: GGUFMetadata, _ key: String, vocabulary count: Int) throws -> Int? {
        guard md[key] != nil else { return nil }
        let id = try md.int(key)
        guard id >= 0 && id < count else {
            throw QLoraError.malformedFile(file: md.path, field: "metadata '\(key)'", reason: "id \(id) is outside the vocabulary 0..<\(count)")
        }
        return id
    }

    /// A boolean flag (`tokenizer.ggml.add_bos_token`, …), `fallback` when absent.
    static func ggufFlag(_ md: GGUFMetadata, _ key: String, default fallback: Bool) throws -> Bool {
        md[key] == nil ? fallback : try md.bool(key)
    }

    /// `tokenizer.ggml.token_type` (NORMAL for every token when absent), each 0...6.
    static func ggufTokenTypes(_ md: GGUFMetadata, count: Int) throws -> [Int] {
        let key = "tokenizer.ggml.token_type"
        func bad(_ reason: String) -> QLoraError { .malformedFile(file: md.path, field: "metadata '\(key)'", reason: reason) }
        var types = [Int](repeating: GGUFTokenType.normal.rawValue, count: count)
        guard let v = md[key] else { return types }
        guard case .array(let a) = v, a.count == count else {
            throw bad("expected an integer array of \(count) elements (one per token), got \(v.typeName)\(elementCount(v))")
        }
        for i in 0..<a.count {
            guard let t = a[i].intValue, GGUFTokenType(rawValue: t) != nil else {
                throw bad("element \(i): \(a[i]) is not a token type 0...6")
            }
            types[i] = t
        }
        return types
    }

    /// `tokenizer.ggml.merges`: "left right" strings in rank order.
    static func ggufMerges(_ md: GGUFMetadata) throws -> [(String, String)] {
        let key = "tokenizer.ggml.merges"
        let lines = try md.strings(key)
        var merges: [(String, String)] = []
        merges.reserveCapacity(lines.count)
        for (k, line) in lines.enumerated() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw QLoraError.malformedFile(file: md.path, field: "metadata '\(key)'", reason: "element \(k): expected \"left right\", got \(line.debugDescription)")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        return merges
    }

    /// " of N elements" for an array value, "" otherwise (for error messages).
    static func elementCount(_ v: GGUFValue) -> String {
        if case .array(let a) = v { return " of \(a.count) elements" }
        return ""
    }
}
