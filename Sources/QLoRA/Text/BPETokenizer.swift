import Foundation

/// A byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json` (+ `tokenizer_config.json`):
/// added tokens split out first, then the pre-tokenizer, then BPE on each piece's bytes; decoding
/// with the ByteLevel decoder. Matches `tokenizers` on SmolLM2's tokenizer (see TokenizerTests).
/// A value type without shared mutable state: safe to use from several threads.
public struct BPETokenizer: Sendable {
    let model: BPEModel
    public private(set) var preTokenizer: PreTokenizer
    let added: AddedTokenMatcher
    /// The bytes each id decodes to, flattened: id k is decodedBytes[offsets[k]..<offsets[k+1]].
    let decodedBytes: [UInt8]
    let offsets: [Int]
    let tokenStrings: [String?]
    let isSpecial: [Bool]
    /// The ids for token strings (vocabulary and added tokens).
    let idsByToken: [String: Int]
    /// Tokens the post-processing puts before and after the text when special tokens are added.
    public let prefixIds: [Int]
    public let suffixIds: [Int]
    public let bosTokenId: Int?
    public let eosTokenId: Int?
    public let padTokenId: Int?
    /// SentencePiece-style (byte_fallback) tokenizers: how segments become pieces, how many
    /// leading spaces the decoder strips, and which ids are `<0xXX>` byte tokens. nil / 0 / empty
    /// for byte-level BPE.
    let metaspace: MetaspaceRule?
    let decoderStripsLeadingSpaces: Int
    let isByteToken: [Bool]
    /// The Jinja chat template (tokenizer_config.json `chat_template`, GGUF `tokenizer.chat_template`).
    public let chatTemplate: String?

    /// Number of ids (the largest id + 1).
    public var vocabularySize: Int { tokenStrings.count }
    /// Ids must be below this (16× the largest vocabularies in use): the id tables are sized by the
    /// largest id, so a file must not make them huge with one entry.
    static let idLimit = 1 << 22
    public var addedTokens: [AddedToken] { added.tokens }

    public func id(of token: String) -> Int? { idsByToken[token] }
    /// The token string of an id (byte-level spelling for vocabulary entries), nil if unassigned.
    public func token(of id: Int) -> String? { id >= 0 && id < tokenStrings.count ? tokenStrings[id] : nil }
    public func isSpecialToken(_ id: Int) -> Bool { id >= 0 && id < isSpecial.count && isSpecial[id] }

    /// This tokenizer with another pre-tokenizer, e.g. `PreTokenizer.llamaCpp(pre: "smollm")`
    /// to match llama.cpp on a GGUF whose `tokenizer.ggml.pre` is `smollm`.
    public func withPreTokenizer(_ p: PreTokenizer) -> BPETokenizer {
        var t = self
        t.preTokenizer = p
        return t
    }

    /// Loads `tokenizer.json`, and `tokenizer_config.json` from the same folder if present (or
    /// from `configPath`).
    public static func load(tokenizerJSON path: String, configPath: String? = nil) throws -> BPETokenizer {
        func read(_ p: String) throws -> [UInt8] {
            guard let d = FileManager.default.contents(atPath: p) else { throw QLoraError.io(file: p, reason: "cannot read the file") }
            return [UInt8](d)
        }
        let cfgPath = configPath ?? (URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("tokenizer_config.json").path)
        let config: [UInt8]? = FileManager.default.fileExists(atPath: cfgPath) ? try read(cfgPath) : nil
        if configPath != nil && config == nil { throw QLoraError.io(file: cfgPath, reason: "no such file") }
        return try BPETokenizer(tokenizerJSON: try read(path), file: path, config: config, configFile: cfgPath)
    }

    public init(tokenizerJSON bytes: [UInt8], file: String = "tokenizer.json",
                config configBytes: [UInt8]? = nil, configFile: String = "tokenizer_config.json") throws {
        let root = try JSONValue.parse(bytes, file: file, field: "tokenizer.json")
        let config = try configBytes.map { try JSONValue.parse($0, file: configFile, field: "tokenizer_config.json") }
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: field, reason: reason) }
        guard case .object = root else { throw bad("(root)", "expected an object, got \(root.kind)") }

        // A byte_fallback BPE model is SentencePiece-style (Llama-2, Mistral): its normalizer,
        // pre-tokenizer and decoder are read by MetaspaceRule / SentencePieceDecoder.
        let sentencePiece = root["model"]?["byte_fallback"] == .bool(true)
        // normalizer: none supported beyond null.
        if !sentencePiece, let n = root["normalizer"], !n.isNull {
            let type: String
            if case .string(let s)? = n["type"] { type = s } else { type = n.kind }
            throw QLoraError.unsupported("\(file): normalizer.type: normalizer '\(type)' (only null is implemented)")
        }

        // model
        guard let m = root["model"], case .object = m else { throw bad("model", "missing or not an object") }
        let type: String
        switch m["type"] {
        case .string(let s)?: type = s
        case nil, .null?: type = "BPE"  // older files omit it
        case let other?: throw bad("model.type", "expected a string, got \(other.kind)")
        }
        guard type == "BPE" else {
            throw QLoraError.unsupported("\(file): model.type: tokenizer model '\(type)' (only byte-level BPE is implemented)")
        }
        func stringField(_ key: String) throws -> String? {
            switch m[key] {
            case nil, .null?: return nil
            case .string(let s)?: return s
            case let other?: throw bad("model.\(key)", "expected a string, got \(other.kind)")
            }
        }
        func boolField(_ key: String) throws -> Bool {
            switch m[key] {
            case nil, .null?: return false
            case .bool(let b)?: return b
            case let other?: throw bad("model.\(key)", "expected a boolean, got \(other.kind)")
            }
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = try stringField(key), !s.isEmpty {
                throw QLoraError.unsupported("\(file): model.\(key): '\(s)' (only byte-level BPE without affixes is implemented)")
            }
        }
        _ = try boolField("byte_fallback")
        if let d = m["dropout"], !d.isNull, d.doubleValue != 0 {
            throw QLoraError.unsupported("\(file): model.dropout: BPE dropout (encoding is deterministic here)")
        }
        let ignoreMerges = try boolField("ignore_merges")
        if sentencePiece && ignoreMerges {
            throw QLoraError.unsupported("\(file): model.ignore_merges: true with byte_fallback (not implemented for SentencePiece-style BPE)")
        }
        let fuseUnk = try boolField("fuse_unk")
        let unkToken = try stringField("unk_token")

        guard case .object(let vocabMembers)? = m["vocab"] else { throw bad("model.vocab", "missing or not an object") }
        var idsByToken: [String: Int] = [:]
        idsByToken.reserveCapacity(vocabMembers.count + 64)
        // Byte-exact: Swift's String equality is canonical equivalence, but a vocabulary may hold
        // "ί" (U+03AF) and "ί" (U+1F77) as two tokens (Llama-2's does).
        var exactIds: [[UInt8]: Int] = [:]
        exactIds.reserveCapacity(vocabMembers.count + 64)
        var tokenById: [(Int, String)] = []
        tokenById.reserveCapacity(vocabMembers.count + 64)
        var maxId = -1
        for (token, v) in vocabMembers {
            guard case .int(let id) = v, id >= 0 else {
                throw bad("model.vocab[\(token.debugDescription)]", "expected a non-negative integer id, got \(v.kind)")
            }
            guard id < BPETokenizer.idLimit else {
                throw bad("model.vocab[\(token.debugDescription)]", "id \(id) is beyond the \(BPETokenizer.idLimit) ids a tokenizer may have (the id tables are sized by the largest id)")
            }
            if exactIds.updateValue(id, forKey: Array(token.utf8)) != nil {
                throw bad("model.vocab[\(token.debugDescription)]", "token listed twice")
            }
            idsByToken[token] = id
            tokenById.append((id, token))
            maxId = max(maxId, id)
        }

        // added_tokens
        var addedTokens: [AddedToken] = []
        if let a = root["added_tokens"], !a.isNull {
            guard case .array(let items) = a else { throw bad("added_tokens", "expected an array, got \(a.kind)") }
            for (k, item) in items.enumerated() {
                let at = "added_tokens[\(k)]"
                guard case .int(let id)? = item["id"], id >= 0 else { throw bad("\(at).id", "expected a non-negative integer") }
                guard id < BPETokenizer.idLimit else { throw bad("\(at).id", "id \(id) is beyond the \(BPETokenizer.idLimit) ids a tokenizer may have") }
                guard case .string(let content)? = item["content"], !content.isEmpty else { throw bad("\(at).content", "expected a non-empty string") }
                func flag(_ key: String, _ fallback: Bool) throws -> Bool {
                    switch item[key] {
                    case nil, .null?: return fallback
                    case .bool(let b)?: return b
                    case let other?: throw bad("\(at).\(key)", "expected a boolean, got \(other.kind)")
                    }
                }
                let special = try flag("special", false)
                addedTokens.append(AddedToken(id: id, content: content, singleWord: try flag("single_word", false),
                                              lstrip: try flag("lstrip", false), rstrip: try flag("rstrip", false),
                                              normalized: try flag("normalized", !special), special: special))
                if let old = exactIds[Array(content.utf8)], old != id {
                    throw bad("\(at)", "'\(content)' has id \(id) but the vocabulary gives it \(old)")
                }
                exactIds[Array(content.utf8)] = id
                idsByToken[content] = id
                tokenById.append((id, content))
                maxId = max(maxId, id)
            }
        }

        // merges
        var mergePairs: [(String, String)] = []
        switch m["merges"] {
        case nil, .null?:
            break
        case .array(let items)?:
            mergePairs.reserveCapacity(items.count)
            for (rank, item) in items.enumerated() {
                let at = "model.merges[\(rank)]"
                switch item {
                case .string(let s):
                    let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                    guard parts.count == 2 else { throw bad(at, "expected \"left right\", got \(s.debugDescription)") }
                    mergePairs.append((String(parts[0]), String(parts[1])))
                case .array(let pair):
                    guard pair.count == 2, case .string(let l) = pair[0], case .string(let r) = pair[1] else {
                        throw bad(at, "expected a pair of strings")
                    }
                    mergePairs.append((l, r))
                default:
                    throw bad(at, "expected a string or a pair of strings, got \(item.kind)")
                }
            }
        case let other?:
            throw bad("model.merges", "expected an array, got \(other.kind)")
        }

        var unknownId: Int? = nil
        if let u = unkToken {
            guard let id = idsByToken[u] else { throw bad("model.unk_token", "'\(u)' is not in the vocabulary") }
            unknownId = id
        }

        // pre_tokenizer, decoder
        var pre: PreTokenizer = .sequence([])
        var spParts: SentencePieceParts? = nil
        if sentencePiece {
            spParts = SentencePieceParts(
                metaspace: try MetaspaceRule.parse(normalizer: root["normalizer"], preTokenizer: root["pre_tokenizer"], file: file),
                decoderStripsLeadingSpaces: try SentencePieceDecoder.parse(root["decoder"], file: file))
        } else {
            // pre_tokenizer
            if let p = root["pre_tokenizer"], !p.isNull {
                pre = try PreTokenizer.parse(p, file: file, path: "pre_tokenizer")
            } else {
                pre = .sequence([])
            }
            // decoder
            if let d = root["decoder"], !d.isNull {
                guard case .string(let dtype)? = d["type"] else { throw bad("decoder.type", "expected a string") }
                guard dtype == "ByteLevel" else {
                    throw QLoraError.unsupported("\(file): decoder.type: decoder '\(dtype)' (only ByteLevel is implemented)")
                }
            }
            guard pre.isByteLevel || (root["decoder"]?["type"] == .string("ByteLevel")) else {
                throw QLoraError.unsupported("\(file): pre_tokenizer: no ByteLevel step and no ByteLevel decoder (only byte-level BPE is implemented)")
            }
        }

        // Special tokens of tokenizer_config.json, and what add_special_tokens puts around the text.
        func configToken(_ key: String) -> Int? {
            switch config?[key] {
            case .string(let s)?: return idsByToken[s]
            case let o? where o["content"] != nil:
                if case .string(let s)? = o["content"] { return idsByToken[s] }
                return nil
            default: return nil
            }
        }
        func configFlag(_ key: String) -> Bool? {
            if case .bool(let b)? = config?[key] { return b }
            return nil
        }
        let bosTokenId = configToken("bos_token")
        let eosTokenId = configToken("eos_token")
        let padTokenId = configToken("pad_token")
        var prefix: [Int] = [], suffix: [Int] = []
        let addBos = configFlag("add_bos_token"), addEos = configFlag("add_eos_token")
        if addBos != nil || addEos != nil {
            if addBos == true, let b = bosTokenId { prefix = [b] }
            if addEos == true, let e = eosTokenId { suffix = [e] }
        } else if let pp = root["post_processor"], !pp.isNull {
            (prefix, suffix) = try BPETokenizer.template(pp, idsByToken: idsByToken, file: file)
        }
        var strings = [String?](repeating: nil, count: maxId + 1)
        for (id, token) in tokenById { strings[id] = token }
        try self.init(parts: BPETokenizerParts(
            file: file, tokenStrings: strings, idsByToken: idsByToken, addedTokens: addedTokens,
            merges: mergePairs, mergesField: "model.merges", ignoreMerges: ignoreMerges, fuseUnknown: fuseUnk,
            unknownId: unknownId, preTokenizer: pre, bosTokenId: bosTokenId, eosTokenId: eosTokenId,
            padTokenId: padTokenId, prefixIds: prefix, suffixIds: suffix,
            chatTemplate: try BPETokenizer.chatTemplate(config, file: configFile), sentencePiece: spParts))
    }


    /// Builds the tables from parsed parts (shared by the tokenizer.json and the GGUF loaders).
    init(parts p: BPETokenizerParts) throws {
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: p.file, field: field, reason: reason) }
        let strings = p.tokenStrings
        let idsByToken = p.idsByToken
        let count = strings.count
        var special = [Bool](repeating: false, count: count)
        for t in p.addedTokens where t.special { special[t.id] = true }
        var flat: [UInt8] = []
        var offsets = [Int](repeating: 0, count: count + 1)
        var byteToken = [UInt32](repeating: UInt32.max, count: 256)
        var vocabByBytes: [[UInt8]: UInt32] = [:]
        var isByteToken: [Bool] = []
        var charToken: [UInt32: UInt32]? = nil
        var byteFallback: [UInt32]? = nil
        if p.sentencePiece != nil {
            // Tokens decode with "▁" as a space, `<0xXX>` as that byte; single-character tokens
            // are BPE's initial symbols.
            isByteToken = [Bool](repeating: false, count: count)
            var chars: [UInt32: UInt32] = [:]
            var fallback = [UInt32](repeating: UInt32.max, count: 256)
            for id in 0..<count {
                offsets[id] = flat.count
                guard let s = strings[id] else { continue }
                let u = Array(s.utf8)
                if u.count == 6, s.hasPrefix("<0x"), s.hasSuffix(">"), let v = UInt8(s.dropFirst(3).prefix(2), radix: 16), !special[id] {
                    flat.append(v)
                    isByteToken[id] = true
                    if fallback[Int(v)] == UInt32.max { fallback[Int(v)] = UInt32(id) }
                    continue
                }
                flat.append(contentsOf: s.replacingOccurrences(of: "\u{2581}", with: " ").utf8)
                if s.unicodeScalars.count == 1 && !special[id] {
                    let key = BPEModel.packedCharacter(u)
                    if chars[key] == nil { chars[key] = UInt32(id) }
                    if u.count == 1 && byteToken[Int(u[0])] == UInt32.max { byteToken[Int(u[0])] = UInt32(id) }
                }
            }
            charToken = chars
            byteFallback = fallback
        } else {
        for id in 0..<count {
            offsets[id] = flat.count
            guard let s = strings[id] else { continue }
            // The ByteLevel decoder: a token whose characters are all in the alphabet stands for
            // those bytes; any other token for its own UTF-8.
            if let bytes = ByteLevelAlphabet.bytes(of: s) {
                flat.append(contentsOf: bytes)
                if bytes.count == 1 && byteToken[Int(bytes[0])] == UInt32.max { byteToken[Int(bytes[0])] = UInt32(id) }
                if p.ignoreMerges { vocabByBytes[bytes] = UInt32(id) }
            } else {
                flat.append(contentsOf: s.utf8)
            }
        }
        }
        offsets[count] = flat.count

        // Merges look tokens up byte-exactly (String equality is canonical equivalence, and a
        // vocabulary may hold canonically equivalent tokens): each token string's id, and among
        // identical duplicates the one `idsByToken` chose.
        var exactIds: [[UInt8]: Int] = [:]
        exactIds.reserveCapacity(idsByToken.count)
        for id in 0..<count { if let s = strings[id] { exactIds[Array(s.utf8)] = exactIds[Array(s.utf8)] ?? id } }
        for (s, id) in idsByToken where id < count && strings[id].map({ $0.utf8.elementsEqual(s.utf8) }) == true {
            exactIds[Array(s.utf8)] = id
        }
        var table = BPEMergeTable(capacity: p.merges.count)
        for (rank, (left, right)) in p.merges.enumerated() {
            let at = "\(p.mergesField)[\(rank)]"
            guard let a = exactIds[Array(left.utf8)] else { throw bad(at, "token \(left.debugDescription) is not in the vocabulary") }
            guard let b = exactIds[Array(right.utf8)] else { throw bad(at, "token \(right.debugDescription) is not in the vocabulary") }
            guard let c = exactIds[Array(left.utf8) + Array(right.utf8)] else {
                throw bad(at, "merged token \((left + right).debugDescription) is not in the vocabulary")
            }
            table.insert(left: UInt32(a), right: UInt32(b), rank: UInt32(rank), merged: UInt32(c))
        }

        model = BPEModel(byteToken: byteToken, merges: table, vocabByBytes: vocabByBytes, ignoreMerges: p.ignoreMerges,
                         unknownId: p.unknownId.map { UInt32($0) }, fuseUnknown: p.fuseUnknown,
                         charToken: charToken, byteFallback: byteFallback)
        preTokenizer = p.preTokenizer
        added = AddedTokenMatcher(p.addedTokens)
        decodedBytes = flat
        self.offsets = offsets
        tokenStrings = strings
        isSpecial = special
        self.idsByToken = idsByToken
        bosTokenId = p.bosTokenId
        eosTokenId = p.eosTokenId
        padTokenId = p.padTokenId
        prefixIds = p.prefixIds
        suffixIds = p.suffixIds
        chatTemplate = p.chatTemplate
        metaspace = p.sentencePiece?.metaspace
        decoderStripsLeadingSpaces = p.sentencePiece?.decoderStripsLeadingSpaces ?? 0
        self.isByteToken = isByteToken
    }

    /// tokenizer_config.json's `chat_template`: a string, or a list of {name, template} whose
    /// "default" entry is used.
    static func chatTemplate(_ config: JSONValue?, file: String) throws -> String? {
        switch config?["chat_template"] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        case .array(let items)?:
            for item in items {
                if case .string("default")? = item["name"], case .string(let t)? = item["template"] { return t }
            }
            throw QLoraError.malformedFile(file: file, field: "chat_template", reason: "a list of templates without a 'default' entry")
        case let other?:
            throw QLoraError.malformedFile(file: file, field: "chat_template", reason: "expected a string, got \(other.kind)")
        }
    }

    /// The tokens a post_processor puts before and after a single sequence.
    static func template(_ pp: JSONValue, idsByToken: [String: Int], file: String) throws -> ([Int], [Int]) {
        guard case .string(let type)? = pp["type"] else {
            throw QLoraError.malformedFile(file: file, field: "post_processor.type", reason: "expected a string")
        }
        switch type {
        case "ByteLevel": return ([], [])
        case "Sequence":
            var pre: [Int] = [], post: [Int] = []
            if case .array(let steps)? = pp["processors"] {
                for s in steps {
                    let (a, b) = try template(s, idsByToken: idsByToken, file: file)
                    pre = a + pre; post += b
                }
            }
            return (pre, post)
        case "TemplateProcessing":
            guard case .array(let items)? = pp["single"] else {
                throw QLoraError.malformedFile(file: file, field: "post_processor.single", reason: "expected an array")
            }
            var pre: [Int] = [], post: [Int] = []
            var seenSequence = false
            for (k, item) in items.enumerated() {
                if item["Sequence"] != nil { seenSequence = true; continue }
                guard case .string(let name)? = item["SpecialToken"]?["id"] else {
                    throw QLoraError.malformedFile(file: file, field: "post_processor.single[\(k)]", reason: "expected Sequence or SpecialToken")
                }
                var ids: [Int] = []
                if case .array(let list)? = pp["special_tokens"]?[name]?["ids"] {
                    ids = list.compactMap { if case .int(let i) = $0 { return i } else { return nil } }
                } else if let id = idsByToken[name] {
                    ids = [id]
                } else {
                    throw QLoraError.malformedFile(file: file, field: "post_processor.single[\(k)]", reason: "unknown special token '\(name)'")
                }
                if seenSequence { post += ids } else { pre += ids }
            }
            return (pre, post)
        default:
            throw QLoraError.unsupported("\(file): post_processor.type: post-processor '\(type)' (implemented: TemplateProcessing, ByteLevel, Sequence)")
        }
    }
}

/// What a byte-level BPE tokenizer is built from, whatever file it came from.
struct BPETokenizerParts {
    var file: String
    /// The token string of each id (nil: unassigned).
    var tokenStrings: [String?]
    var idsByToken: [String: Int]
    var addedTokens: [AddedToken]
    /// Merges in rank order, as (left, right) token strings.
    var merges: [(String, String)]
    /// How errors name the merges, e.g. "model.merges".
    var mergesField: String
    var ignoreMerges: Bool
    var fuseUnknown: Bool
    var unknownId: Int?
    var preTokenizer: PreTokenizer
    var bosTokenId: Int?
    var eosTokenId: Int?
    var padTokenId: Int?
    var prefixIds: [Int]
    var suffixIds: [Int]
    var chatTemplate: String?
    var sentencePiece: SentencePieceParts? = nil
}

/// What makes a tokenizer.json BPE model SentencePiece-style (see MetaspaceRule).
struct SentencePieceParts {
    var metaspace: MetaspaceRule
    var decoderStripsLeadingSpaces: Int
}
