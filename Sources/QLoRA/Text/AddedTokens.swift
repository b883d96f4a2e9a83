/// One entry of a tokenizer.json's `added_tokens`.
public struct AddedToken: Equatable, Sendable {
    public var id: Int
    public var content: String
    public var singleWord: Bool
    public var lstrip: Bool
    public var rstrip: Bool
    public var normalized: Bool
    public var special: Bool
}

/// Splits text at added tokens the way Hugging Face's AddedVocabulary does: leftmost-longest
/// matches, first of the tokens with `normalized: false`, then of those with `normalized: true`
/// in the text left between (there is no normalizer, so both see the raw text); `single_word`
/// skips a match touching a word character; `lstrip` / `rstrip` take in the whitespace beside it.
struct AddedTokenMatcher: Sendable {
    let tokens: [AddedToken]
    /// Per pass: for each first byte, the tokens starting with it, longest first.
    private let passes: [[[Int]]]

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        var passes: [[[Int]]] = []
        for normalized in [false, true] {
            var byFirst = [[Int]](repeating: [], count: 256)
            for (k, t) in tokens.enumerated() where t.normalized == normalized && !t.content.isEmpty {
                byFirst[Int(t.content.utf8.first!)].append(k)
            }
            for i in 0..<256 { byFirst[i].sort { tokens[$0].content.utf8.count > tokens[$1].content.utf8.count } }
            passes.append(byFirst)
        }
        self.passes = passes
    }

    /// The segments of `b`: (range, added token id or nil for text to pre-tokenize).
    func split(_ b: UnsafeBufferPointer<UInt8>, skipSpecial: Bool) -> [(Range<Int>, Int?)] {
        var segments: [(Range<Int>, Int?)] = [(0..<b.count, nil)]
        if tokens.isEmpty { return segments }
        for pass in passes {
            var next: [(Range<Int>, Int?)] = []
            for seg in segments {
                if seg.1 != nil { next.append(seg); continue }
                find(b, seg.0, pass, skipSpecial: skipSpecial, into: &next)
            }
            segments = next
        }
        return segments
    }

    private func find(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, _ byFirst: [[Int]], skipSpecial: Bool,
                      into out: inout [(Range<Int>, Int?)]) {
        var cursor = range.lowerBound
        var i = range.lowerBound
        let hi = range.upperBound
        while i < hi {
            var matched: Int? = nil
            for k in byFirst[Int(b[i])] {
                let c = tokens[k].content.utf8
                if i + c.count > hi { continue }
                var ok = true
                var j = i
                for x in c { if b[j] != x { ok = false; break }; j += 1 }
                if ok { matched = k; break }
            }
            guard let k = matched else { i += 1; continue }
            let t = tokens[k]
            var start = i
            var stop = i + t.content.utf8.count
            if skipSpecial && t.special { i = stop; continue }
            if t.singleWord {
                let before = start > range.lowerBound && AddedTokenMatcher.endsWithWord(b, range.lowerBound, start)
                let after = stop < hi && AddedTokenMatcher.startsWithWord(b, stop)
                if before || after { i = stop; continue }
            }
            if t.lstrip {
                var s = start
                while s > cursor {
                    var p = s - 1
                    while p > cursor && b[p] & 0xC0 == 0x80 { p -= 1 }
                    let (c, _) = utf8Scalar(b, p)
                    guard UnicodeClass.of(c) == UnicodeClass.space else { break }
                    s = p
                }
                start = s
            }
            if t.rstrip {
                while stop < hi {
                    let (c, n) = utf8Scalar(b, stop)
                    guard UnicodeClass.of(c) == UnicodeClass.space else { break }
                    stop += n
                }
            }
            if cursor < start { out.append((cursor..<start, nil)) }
            out.append((start..<stop, t.id))
            cursor = stop
            i = stop
        }
        if cursor < hi { out.append((cursor..<hi, nil)) }
    }

    static func endsWithWord(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ end: Int) -> Bool {
        var p = end - 1
        while p > lo && b[p] & 0xC0 == 0x80 { p -= 1 }
        return UnicodeClass.isWordCharacter(utf8Scalar(b, p).0)
    }

    static func startsWithWord(_ b: UnsafeBufferPointer<UInt8>, _ at: Int) -> Bool {
        UnicodeClass.isWordCharacter(utf8Scalar(b, at).0)
    }
}
