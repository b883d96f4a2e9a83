import Foundation

/// A SentencePiece BPE tokenizer (Llama-2, Mistral-7B): from a `tokenizer.model` or from a GGUF
/// whose `tokenizer.ggml.model` is `llama` (pieces, scores and types in its metadata, as llama.cpp
/// reads them). Encoding as the `sentencepiece` library does: spaces become "▁" (U+2581), a "▁" is
/// put in front (add_dummy_prefix), user-defined pieces are matched first, then the text, split
/// into code points, is merged pair by pair — always the adjacent pair whose concatenation is a
/// piece with the highest score, the leftmost on ties; a final symbol that is not a piece becomes
/// its UTF-8 bytes as `<0xXX>` pieces (byte fallback) or the unknown piece. Control pieces
/// (`<s>`, `</s>`) are never matched in text. Decoding: "▁" → " ", byte pieces joined and read as
/// UTF-8 (each invalid byte → U+FFFD), the unknown piece → " ⁇ ", control pieces → nothing, and
/// the first visible piece loses its leading space (the dummy prefix).
public struct SentencePieceTokenizer: Sendable {
    public let pieces: [String]
    let scores: [Float]
    let types: [UInt8]
    /// Normal and user-defined pieces (what merges may produce and symbols are looked up in), by
    /// UTF-8 bytes: String keys would compare canonically ("e\u{301}" == "é"), sentencepiece
    /// compares bytes.
    let mergeable: [[UInt8]: Int]
    let byteIds: [Int?]
    let userDefined: [String]
    public let unknownId: Int?
    public let bosTokenId: Int?
    public let eosTokenId: Int?
    public let addDummyPrefix: Bool
    let removeExtraWhitespaces: Bool
    let escapeWhitespaces: Bool

    public var vocabularySize: Int { pieces.count }

    /// Loads a SentencePiece `tokenizer.model` (BPE with the identity normalizer).
    public static func load(model path: String) throws -> SentencePieceTokenizer {
        guard let data = FileManager.default.contents(atPath: path) else { throw QLoraError.io(file: path, reason: "cannot read the file") }
        let m = try SentencePieceModelFile([UInt8](data), file: path)
        guard m.modelType == 2 else {
            throw QLoraError.unsupported("\(path): trainer_spec.model_type \(m.modelType) (only BPE, 2, is implemented; 1 is unigram)")
        }
        guard m.precompiledCharsmap.isEmpty else {
            throw QLoraError.unsupported("\(path): normalizer_spec '\(m.normalizerName)' with a precompiled charsmap (only the identity normalizer is implemented)")
        }
        func id(_ i: Int) -> Int? { i >= 0 && i < m.pieces.count ? i : nil }
        return SentencePieceTokenizer(pieces: m.pieces, scores: m.scores, types: m.types.map { UInt8($0.rawValue) },
                                      unknownId: id(m.unkId), bosTokenId: id(m.bosId), eosTokenId: id(m.eosId),
                                      byteFallback: m.byteFallback, addDummyPrefix: m.addDummyPrefix,
                                      removeExtraWhitespaces: m.removeExtraWhitespaces, escapeWhitespaces: m.escapeWhitespaces)
    }

    /// From a GGUF's metadata with `tokenizer.ggml.model` = "llama" (llama.cpp's SPM vocabulary):
    /// tokens, scores, token_type, unknown/bos/eos ids, add_space_prefix (default true).
    public init(ggufMetadata md: GGUFMetadata) throws {
        let file = md.path
        func bad(_ key: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: "metadata '\(key)'", reason: reason) }
        let kind = try md.string("tokenizer.ggml.model")
        guard kind == "llama" else {
            throw QLoraError.unsupported("\(file): metadata 'tokenizer.ggml.model': '\(kind)' is not a SentencePiece ('llama') vocabulary")
        }
        let tokens = try md.strings("tokenizer.ggml.tokens")
        guard !tokens.isEmpty else { throw bad("tokenizer.ggml.tokens", "empty vocabulary") }
        guard case .array(let s)? = md["tokenizer.ggml.scores"], s.count == tokens.count else {
            throw bad("tokenizer.ggml.scores", "expected a FLOAT32 array of \(tokens.count) elements")
        }
        let scores = try (0..<s.count).map { i -> Float in
            guard let f = s[i].floatValue else { throw bad("tokenizer.ggml.scores", "element \(i) is not a float") }
            return f
        }
        var types = [UInt8](repeating: 1, count: tokens.count)
        if let v = md["tokenizer.ggml.token_type"] {
            guard case .array(let a) = v, a.count == tokens.count else { throw bad("tokenizer.ggml.token_type", "expected \(tokens.count) elements") }
            for i in 0..<a.count {
                guard let t = a[i].intValue, (1...6).contains(t) else { throw bad("tokenizer.ggml.token_type", "element \(i): \(a[i]) is not a token type 1...6") }
                types[i] = UInt8(t)
            }
        }
        func tokenId(_ key: String, _ fallback: Int?) throws -> Int? {
            guard md[key] != nil else { return fallback }
            let id = try md.int(key)
            guard id >= 0 && id < tokens.count else { throw bad(key, "id \(id) is outside the vocabulary 0..<\(tokens.count)") }
            return id
        }
        let prefix = md["tokenizer.ggml.add_space_prefix"] == nil ? true : try md.bool("tokenizer.ggml.add_space_prefix")
        self.init(pieces: tokens, scores: scores, types: types,
                  unknownId: try tokenId("tokenizer.ggml.unknown_token_id", types.firstIndex(of: 2)),
                  bosTokenId: try tokenId("tokenizer.ggml.bos_token_id", nil), eosTokenId: try tokenId("tokenizer.ggml.eos_token_id", nil),
                  byteFallback: types.contains(6), addDummyPrefix: prefix, removeExtraWhitespaces: false, escapeWhitespaces: true)
    }

    init(pieces: [String], scores: [Float], types: [UInt8], unknownId: Int?, bosTokenId: Int?, eosTokenId: Int?,
         byteFallback: Bool, addDummyPrefix: Bool, removeExtraWhitespaces: Bool, escapeWhitespaces: Bool) {
        self.pieces = pieces
        self.scores = scores
        self.types = types
        var mergeable: [[UInt8]: Int] = [:]
        var byteIds = [Int?](repeating: nil, count: 256)
        var userDefined: [String] = []
        for (i, p) in pieces.enumerated() {
            switch types[i] {
            case 1, 4:
                if mergeable[Array(p.utf8)] == nil { mergeable[Array(p.utf8)] = i }
                if types[i] == 4 && !p.isEmpty { userDefined.append(p) }
            case 6:
                if byteFallback, p.count == 6, p.hasPrefix("<0x"), p.hasSuffix(">"), let v = UInt8(p.dropFirst(3).prefix(2), radix: 16) {
                    byteIds[Int(v)] = i
                }
            default: break
            }
        }
        self.mergeable = mergeable
        self.byteIds = byteIds
        self.userDefined = userDefined.sorted { $0.unicodeScalars.count > $1.unicodeScalars.count }
        self.unknownId = unknownId
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
        self.addDummyPrefix = addDummyPrefix
        self.removeExtraWhitespaces = removeExtraWhitespaces
        self.escapeWhitespaces = escapeWhitespaces
    }

    public func token(of id: Int) -> String? { id >= 0 && id < pieces.count ? pieces[id] : nil }

    /// The normalized text: extra spaces removed (if the model says so), spaces as "▁", the
    /// dummy prefix.
    func normalize(_ text: String) -> [Unicode.Scalar] {
        var s = Array(text.unicodeScalars)
        if removeExtraWhitespaces {
            var out: [Unicode.Scalar] = []
            for c in s where !(c == " " && (out.isEmpty || out.last == " ")) { out.append(c) }
            while out.last == " " { out.removeLast() }
            s = out
        }
        if s.isEmpty { return [] }
        if escapeWhitespaces { s = s.map { $0 == " " ? "\u{2581}" : $0 } }
        if addDummyPrefix { s.insert(escapeWhitespaces ? "\u{2581}" : " ", at: 0) }
        return s
    }

    /// The ids of `text` (with BOS first when `addBos` and the model has one).
    public func encode(_ text: String, addBos: Bool = false) -> [Int] {
        let s = normalize(text)
        var ids: [Int] = []
        if addBos, let b = bosTokenId { ids.append(b) }
        // Initial symbols: user-defined pieces whole, else single code points.
        var symbols: [Range<Int>] = []
        var i = 0
        while i < s.count {
            var len = 1
            for u in userDefined {
                let us = Array(u.unicodeScalars)
                if i + us.count <= s.count && Array(s[i..<(i + us.count)]) == us { len = us.count; break }
            }
            symbols.append(i..<(i + len))
            i += len
        }
        func piece(_ r: Range<Int>) -> [UInt8] {
            var t = String.UnicodeScalarView()
            t.append(contentsOf: s[r])
            return Array(String(t).utf8)
        }
        // Merge: a doubly linked list of symbols and a max-heap of candidate pairs.
        let n = symbols.count
        var prev = (0..<n).map { $0 - 1 }
        var next = (0..<n).map { $0 + 1 < n ? $0 + 1 : -1 }
        var alive = [Bool](repeating: true, count: symbols.count)
        var heap = PairHeap()
        func consider(_ l: Int) {
            let r = next[l]
            guard l >= 0, r >= 0 else { return }
            let merged = symbols[l].lowerBound..<symbols[r].upperBound
            if let id = mergeable[piece(merged)] {
                heap.push(.init(score: scores[id], left: l, right: r, length: merged.count))
            }
        }
        for l in 0..<symbols.count { consider(l) }
        while let top = heap.pop() {
            let l = top.left, r = top.right
            // Stale: a side merged away, or the pair is no longer adjacent / the same length.
            guard alive[l], alive[r], next[l] == r, symbols[l].count + symbols[r].count == top.length else { continue }
            symbols[l] = symbols[l].lowerBound..<symbols[r].upperBound
            alive[r] = false
            next[l] = next[r]
            if next[r] >= 0 { prev[next[r]] = l }
            if prev[l] >= 0 { consider(prev[l]) }
            consider(l)
        }
        var k = symbols.isEmpty ? -1 : 0
        while k >= 0 {
            let p = piece(symbols[k])
            if let id = mergeable[p] {
                ids.append(id)
            } else {
                let bytes = p
                if bytes.allSatisfy({ byteIds[Int($0)] != nil }) {
                    for b in bytes { ids.append(byteIds[Int(b)]!) }
                } else if let u = unknownId {
                    ids.append(u)
                }
            }
            k = next[k]
        }
        return ids
    }

    /// The text of `ids`, as sentencepiece's DecodeIds. Throws for an id outside the vocabulary.
    public func decode(_ ids: [Int]) throws -> String {
        var out = ""
        var pendingBytes: [UInt8] = []
        var first = true
        func flush() {
            guard !pendingBytes.isEmpty else { return }
            out += SentencePieceTokenizer.decodeUTF8PerByte(pendingBytes)
            pendingBytes = []
        }
        for (k, id) in ids.enumerated() {
            guard id >= 0 && id < pieces.count else {
                throw QLoraError.invalidArgument("token id \(id) at position \(k) is out of range 0..<\(pieces.count)")
            }
            switch types[id] {
            case 3:  // control: invisible
                continue
            case 6:
                if let v = UInt8(pieces[id].dropFirst(3).prefix(2), radix: 16) { pendingBytes.append(v); first = false; continue }
            default: break
            }
            flush()
            if types[id] == 2 { out += " \u{2047} "; first = false; continue }
            var p = Substring(pieces[id])
            if first && addDummyPrefix && p.hasPrefix("\u{2581}") { p = p.dropFirst() }
            first = false
            out += p.replacingOccurrences(of: "\u{2581}", with: " ")
        }
        flush()
        return out
    }

    /// UTF-8 with every byte that does not start a valid sequence replaced by U+FFFD (what
    /// sentencepiece does with byte pieces: one replacement per bad byte).
    static func decodeUTF8PerByte(_ b: [UInt8]) -> String {
        var out = String.UnicodeScalarView()
        var i = 0
        while i < b.count {
            let c = b[i]
            let n = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0
            // The second byte's range depends on the first (no overlongs, surrogates or > U+10FFFF).
            let lo: UInt8 = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80
            let hi: UInt8 = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF
            var ok = n > 0 && i + n <= b.count
            if ok && n > 1 {
                ok = b[i + 1] >= lo && b[i + 1] <= hi
                for k in 2..<max(n, 2) where ok { ok = b[i + k] & 0xC0 == 0x80 }
            }
            if ok {
                var v = n == 1 ? UInt32(c) : UInt32(c) & (0xFF >> (n + 1))
                for k in 1..<max(n, 1) { v = v << 6 | UInt32(b[i + k] & 0x3F) }
                out.append(Unicode.Scalar(v)!)
                i += n
            } else {
                out.append("\u{FFFD}"); i += 1
            }
        }
        return String(out)
    }
}

/// Candidate merges, highest score first, then leftmost.
struct PairHeap {
    struct Entry { var score: Float; var left: Int; var right: Int; var length: Int }
    var items: [Entry] = []

    static func before(_ a: Entry, _ b: Entry) -> Bool { a.score != b.score ? a.score > b.score : a.left < b.left }

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            guard PairHeap.before(items[i], items[p]) else { break }
            items.swapAt(i, p); i = p
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && PairHeap.before(items[l], items[m]) { m = l }
                if r < items.count && PairHeap.before(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m); i = m
            }
        }
        return top
    }
}
