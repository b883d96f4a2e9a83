/// How a SentencePiece-style `tokenizer.json` (Llama-2 / Mistral, BPE with `byte_fallback`) turns
/// each text segment between added tokens into the piece BPE runs on: spaces become "▁" (U+2581)
/// and a "▁" goes in front. Two spellings exist:
/// - the normalizer Sequence[Prepend("▁"), Replace(" ", "▁")] (transformers 4, legacy): "▁" is
///   put in front of every non-empty segment;
/// - the pre-tokenizer Metaspace("▁", prepend_scheme, split) (transformers 5 and non-legacy):
///   "▁" is put in front unless the segment already starts with one ("always"), and for "first"
///   only on the segment at the very start of the text; `split` cuts before every "▁".
struct MetaspaceRule: Sendable, Equatable {
    enum Prepend: Sendable, Equatable { case everySegment, always, first, never }
    var prepend: Prepend
    var split: Bool

    static let replacement: [UInt8] = Array("\u{2581}".utf8)

    /// The pieces of the segment `b[range]` (`range.lowerBound == 0`: it starts the text).
    func pieces(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> [[UInt8]] {
        var unused: [[Int]] = []
        return pieces(b, range, sources: &unused, trackSources: false)
    }

    /// The pieces, and for every byte of each piece the index in `b` of the byte it came from (a
    /// "▁" for a space: the space; the prepended "▁": the segment's first byte, as `tokenizers`
    /// aligns it with the first character).
    func pieces(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, sources: inout [[Int]], trackSources: Bool = true) -> [[UInt8]] {
        sources.removeAll()
        if range.isEmpty { return [] }
        var s: [UInt8] = []
        var src: [Int] = []
        s.reserveCapacity(range.count + 8)
        for i in range {
            if b[i] == 0x20 {
                s.append(contentsOf: MetaspaceRule.replacement)
                if trackSources { src.append(contentsOf: [i, i, i]) }
            } else {
                s.append(b[i])
                if trackSources { src.append(i) }
            }
        }
        let startsWithReplacement = s.starts(with: MetaspaceRule.replacement)
        let prefix: Bool
        switch prepend {
        case .everySegment: prefix = true
        case .always: prefix = !startsWithReplacement
        case .first: prefix = !startsWithReplacement && range.lowerBound == 0
        case .never: prefix = false
        }
        if prefix {
            s.insert(contentsOf: MetaspaceRule.replacement, at: 0)
            if trackSources { src.insert(contentsOf: [range.lowerBound, range.lowerBound, range.lowerBound], at: 0) }
        }
        var cuts = [0]
        if split {
            // MergedWithNext: each "▁" starts a new piece.
            var i = 0
            while i < s.count {
                if i > 0 && s[i...].starts(with: MetaspaceRule.replacement) { cuts.append(i) }
                i += s[i] < 0x80 ? 1 : s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : 2
            }
        }
        cuts.append(s.count)
        var out: [[UInt8]] = []
        for k in 0..<(cuts.count - 1) {
            out.append(Array(s[cuts[k]..<cuts[k + 1]]))
            if trackSources { sources.append(Array(src[cuts[k]..<cuts[k + 1]])) }
        }
        return out
    }

    /// Reads a tokenizer.json's `normalizer` and `pre_tokenizer` (either may be null) when they
    /// are one of the two spellings above; anything else is a QLoraError naming the field.
    static func parse(normalizer: JSONValue?, preTokenizer: JSONValue?, file: String) throws -> MetaspaceRule {
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: field, reason: reason) }
        let n = normalizer.flatMap { $0.isNull ? nil : $0 }
        let p = preTokenizer.flatMap { $0.isNull ? nil : $0 }
        switch (n, p) {
        case (let n?, nil):
            // Sequence[Prepend("▁"), Replace(" ", "▁")]
            guard case .string("Sequence")? = n["type"], case .array(let steps)? = n["normalizers"], steps.count == 2,
                  case .string("Prepend")? = steps[0]["type"], case .string("\u{2581}")? = steps[0]["prepend"],
                  case .string("Replace")? = steps[1]["type"], case .string(" ")? = steps[1]["pattern"]?["String"],
                  case .string("\u{2581}")? = steps[1]["content"] else {
                throw QLoraError.unsupported("\(file): normalizer: only Sequence[Prepend(\"▁\"), Replace(\" \", \"▁\")] is implemented for a byte_fallback BPE model")
            }
            return MetaspaceRule(prepend: .everySegment, split: false)
        case (nil, let p?):
            guard case .string("Metaspace")? = p["type"] else {
                throw QLoraError.unsupported("\(file): pre_tokenizer.type: only Metaspace is implemented for a byte_fallback BPE model")
            }
            switch p["replacement"] {
            case .string("\u{2581}")?, nil: break
            default: throw QLoraError.unsupported("\(file): pre_tokenizer.replacement: only \"▁\" is implemented")
            }
            let prepend: Prepend
            switch p["prepend_scheme"] {
            case .string("always")?: prepend = .always
            case .string("first")?: prepend = .first
            case .string("never")?: prepend = .never
            case nil, .null?:  // older files: add_prefix_space
                if case .bool(false)? = p["add_prefix_space"] { prepend = .never } else { prepend = .always }
            case let other?: throw bad("pre_tokenizer.prepend_scheme", "expected always, first or never, got \(other)")
            }
            var split = true
            switch p["split"] {
            case nil, .null?: break
            case .bool(let b)?: split = b
            case let other?: throw bad("pre_tokenizer.split", "expected a boolean, got \(other.kind)")
            }
            return MetaspaceRule(prepend: prepend, split: split)
        case (nil, nil):
            return MetaspaceRule(prepend: .never, split: false)
        case (_?, _?):
            throw QLoraError.unsupported("\(file): normalizer and pre_tokenizer both set for a byte_fallback BPE model (implemented: the Prepend/Replace normalizer or the Metaspace pre-tokenizer)")
        }
    }
}

/// The decoder of a SentencePiece-style tokenizer.json: Sequence[Replace("▁", " "), ByteFallback,
/// Fuse, Strip(" ", start, 0)] (what transformers writes for Llama-2 / Mistral). Returns how many
/// leading spaces Strip removes from the decoded text.
enum SentencePieceDecoder {
    static func parse(_ d: JSONValue?, file: String) throws -> Int {
        let unsupported = QLoraError.unsupported("\(file): decoder: only Sequence[Replace(\"▁\", \" \"), ByteFallback, Fuse, Strip(\" \", n, 0)] is implemented for a byte_fallback BPE model")
        guard let d, !d.isNull else { throw unsupported }
        guard case .string("Sequence")? = d["type"], case .array(let steps)? = d["decoders"], steps.count == 3 || steps.count == 4,
              case .string("Replace")? = steps[0]["type"], case .string("\u{2581}")? = steps[0]["pattern"]?["String"],
              case .string(" ")? = steps[0]["content"],
              case .string("ByteFallback")? = steps[1]["type"], case .string("Fuse")? = steps[2]["type"] else { throw unsupported }
        guard steps.count == 4 else { return 0 }
        guard case .string("Strip")? = steps[3]["type"], case .string(" ")? = steps[3]["content"],
              case .int(let start)? = steps[3]["start"], start >= 0, case .int(0)? = steps[3]["stop"] else { throw unsupported }
        return start
    }
}
