/// Decodes tokens one at a time during generation. A token can end inside a UTF-8 character
/// (emoji and CJK are often split over several tokens): those bytes are held back until the
/// character completes, so the pieces returned, joined with `finish()`, equal `decode` of all ids
/// (for SentencePiece-style tokenizers: the leading space is stripped as `decode` does; a run of
/// `<0xXX>` tokens that is not valid UTF-8 gives U+FFFD per maximal invalid subpart here, one per
/// byte of the whole run in `decode`).
public struct StreamingDecoder: Sendable {
    public let tokenizer: BPETokenizer
    public let skipSpecialTokens: Bool
    private var pending: [UInt8] = []
    private var count = 0
    /// Leading spaces still to strip (a SentencePiece-style decoder's Strip step).
    private var stripLeft: Int

    public init(tokenizer: BPETokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        stripLeft = tokenizer.decoderStripsLeadingSpaces
    }

    private mutating func stripLeading(_ t: String) -> String {
        guard stripLeft > 0, !t.isEmpty else { return t }
        var s = t.unicodeScalars[...]
        while stripLeft > 0, s.first == " " { s = s.dropFirst(); stripLeft -= 1 }
        if !s.isEmpty { stripLeft = 0 }
        return String(String.UnicodeScalarView(s))
    }

    /// The text that is complete after `id` (possibly empty).
    public mutating func push(_ id: Int) throws -> String {
        try tokenizer.appendBytes(of: id, at: count, skipSpecialTokens: skipSpecialTokens, to: &pending)
        count += 1
        let hold = StreamingDecoder.incompleteTail(pending)
        if hold == pending.count { return "" }
        let text = String(decoding: pending[..<(pending.count - hold)], as: UTF8.self)
        pending.removeFirst(pending.count - hold)
        return stripLeading(text)
    }

    /// What is left: a held-back incomplete character becomes U+FFFD.
    public mutating func finish() -> String {
        let text = String(decoding: pending, as: UTF8.self)
        pending.removeAll()
        return stripLeading(text)
    }

    /// The length of the tail of `b` that is a valid but unfinished UTF-8 sequence (0...3): a
    /// later byte could complete it, so decoding it now could differ from decoding it later.
    static func incompleteTail(_ b: [UInt8]) -> Int {
        let n = b.count
        var k = 1
        while k <= min(3, n) {
            let lead = b[n - k]
            if lead & 0xC0 == 0x80 { k += 1; continue }  // a continuation byte: look further back
            let need: Int
            switch lead {
            case 0xC2...0xDF: need = 2
            case 0xE0...0xEF: need = 3
            case 0xF0...0xF4: need = 4
            default: return 0
            }
            guard k < need else { return 0 }
            // The bytes after the lead must be continuations allowed right there.
            for j in 1..<k {
                let c = b[n - k + j]
                var low: UInt8 = 0x80, high: UInt8 = 0xBF
                if j == 1 {
                    switch lead {
                    case 0xE0: low = 0xA0
                    case 0xED: high = 0x9F
                    case 0xF0: low = 0x90
                    case 0xF4: high = 0x8F
                    default: break
                    }
                }
                if c < low || c > high { return 0 }
            }
            return k
        }
        return 0
    }
}
