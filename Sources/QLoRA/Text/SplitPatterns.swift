/// Hand-written scanners for the split regexes byte-level BPE tokenizers use, matching
/// Oniguruma's leftmost, first-alternative-wins semantics (with the backtracking of
/// `\s+(?!\S)`), on UTF-8 bytes. Each reports the matches in [lo, hi) in order.
public enum SplitPattern: Equatable, Sendable {
    /// GPT-2's `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// (ByteLevel's own regex; SmolLM2). Contractions are case-sensitive.
    case gpt2
    /// Llama 3's `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`; `maxDigits` 1 is Qwen 2's `\p{N}`.
    case llama3(maxDigits: Int)
    /// `\p{N}`: every number character alone (llama.cpp's digit isolation).
    case numberCharacter
    /// A literal string (a Split pre-tokenizer's `{"String": ...}` pattern).
    case literal([UInt8])
    /// `\p{N}+`: runs of number characters (llama.cpp's default pre-tokenizer).
    case numberRun
    /// `[\p{P}<extra>]+`: runs of Unicode punctuation (general category P*) and the ASCII bytes
    /// `extra` (llama.cpp's falcon and default pre-tokenizers).
    case punctuationRun(extra: [UInt8])
    /// `[0-9][0-9][0-9]`: three ASCII digits (llama.cpp's falcon and default pre-tokenizers).
    case asciiDigitTriple
    /// `[\r\n]`: one CR or LF (llama.cpp's deepseek-coder).
    case newlineCharacter
    /// `\s?\p{L}+` (llama.cpp's deepseek-coder).
    case spaceThenLetters
    /// `\s?\p{P}+` (llama.cpp's deepseek-coder).
    case spaceThenPunctuation
    /// `[a-bc-d...]+`: runs of scalars inside the ranges (llama.cpp's deepseek-coder CJK class).
    case scalarRangeRun([ClosedRange<UInt32>])

    /// deepseek-coder's `[一-龥ࠀ-一가-퟿]+`.
    static let deepseekCJK: [ClosedRange<UInt32>] = [0x4E00...0x9FA5, 0x0800...0x4E00, 0xAC00...0xD7FF]

    public static let gpt2Regex = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    public static let llama3Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    public static let qwen2Regex = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The scanner for a regex of a tokenizer.json, or nil if it is not one of those implemented.
    public static func forRegex(_ regex: String) -> SplitPattern? {
        switch regex {
        case gpt2Regex: return .gpt2
        case llama3Regex: return .llama3(maxDigits: 3)
        case qwen2Regex: return .llama3(maxDigits: 1)
        case #"\p{N}"#: return .numberCharacter
        default: return nil
        }
    }

    static let supportedRegexes = [gpt2Regex, llama3Regex, qwen2Regex, #"\p{N}"#]

    func matches(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, _ emit: (Int, Int) -> Void) {
        switch self {
        case .gpt2: SplitPattern.scanGPT2(b, lo, hi, emit)
        case let .llama3(maxDigits): SplitPattern.scanLlama3(b, lo, hi, maxDigits: maxDigits, emit)
        case .numberCharacter:
            var i = lo
            while i < hi {
                let (c, n) = utf8Scalar(b, i)
                if UnicodeClass.of(c) == UnicodeClass.number { emit(i, i + n) }
                i += n
            }
        case .numberRun:
            SplitPattern.scanRuns(b, lo, hi, optionalLeadingSpace: false, emit) { UnicodeClass.of($0) == UnicodeClass.number }
        case let .punctuationRun(extra):
            SplitPattern.scanRuns(b, lo, hi, optionalLeadingSpace: false, emit) {
                UnicodeClass.isPunctuation($0) || ($0 < 0x80 && extra.contains(UInt8($0)))
            }
        case .asciiDigitTriple:
            var i = lo
            while i + 3 <= hi {
                if (0x30...0x39).contains(b[i]) && (0x30...0x39).contains(b[i + 1]) && (0x30...0x39).contains(b[i + 2]) {
                    emit(i, i + 3); i += 3
                } else { i += 1 }
            }
        case .newlineCharacter:
            for i in lo..<hi where b[i] == 0x0A || b[i] == 0x0D { emit(i, i + 1) }
        case .spaceThenLetters:
            SplitPattern.scanRuns(b, lo, hi, optionalLeadingSpace: true, emit) { UnicodeClass.of($0) == UnicodeClass.letter }
        case .spaceThenPunctuation:
            SplitPattern.scanRuns(b, lo, hi, optionalLeadingSpace: true, emit) { UnicodeClass.isPunctuation($0) }
        case let .scalarRangeRun(ranges):
            SplitPattern.scanRuns(b, lo, hi, optionalLeadingSpace: false, emit) { c in ranges.contains { $0.contains(c) } }
        case let .literal(needle):
            guard !needle.isEmpty else { return }
            var i = lo
            while i + needle.count <= hi {
                var k = 0
                while k < needle.count && b[i + k] == needle[k] { k += 1 }
                if k == needle.count { emit(i, i + k); i += k } else { i += 1 }
            }
        }
    }

    /// The leftmost-longest matches of `\s?X+` (or `X+`) where `X` is `member`: a whitespace
    /// scalar is taken only when an `X` follows it.
    static func scanRuns(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, optionalLeadingSpace: Bool,
                         _ emit: (Int, Int) -> Void, _ member: (UInt32) -> Bool) {
        var i = lo
        while i < hi {
            let (c, n) = utf8Scalar(b, i)
            var start = -1
            if member(c) {
                start = i
            } else if optionalLeadingSpace && UnicodeClass.of(c) == UnicodeClass.space && i + n < hi && member(utf8Scalar(b, i + n).0) {
                start = i + n
            }
            guard start >= 0 else { i += n; continue }
            var j = start
            while j < hi {
                let (d, m) = utf8Scalar(b, j)
                guard member(d) else { break }
                j += m
            }
            emit(i, j)
            i = j
        }
    }

    /// The end of the run of scalars of class `cls` starting at `i`.
    @inline(__always)
    static func run(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int, _ cls: UInt8, limit: Int = Int.max) -> Int {
        var j = i
        var count = 0
        while j < hi && count < limit {
            let (c, n) = utf8Scalar(b, j)
            guard UnicodeClass.of(c) == cls else { break }
            j += n
            count += 1
        }
        return j
    }

    /// The end of the run of "other" scalars (not \s, \p{L}, \p{N}) starting at `i`.
    @inline(__always)
    static func otherRun(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int) -> Int {
        var j = i
        while j < hi {
            let (c, n) = utf8Scalar(b, j)
            guard UnicodeClass.of(c) == 0 else { break }
            j += n
        }
        return j
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar `i`: the whole run if it reaches `hi`, else the run
    /// without its last scalar (which stays to prefix the next word), else the single scalar.
    @inline(__always)
    static func whitespace(_ b: UnsafeBufferPointer<UInt8>, _ i: Int, _ hi: Int) -> Int {
        var j = i
        var last = i
        while j < hi {
            let (c, n) = utf8Scalar(b, j)
            guard UnicodeClass.of(c) == UnicodeClass.space else { break }
            last = j
            j += n
        }
        if j == hi || last == i { return j }
        return last
    }

    static func scanGPT2(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, _ emit: (Int, Int) -> Void) {
        var i = lo
        while i < hi {
            let c0 = b[i]
            if c0 == 0x27 && i + 1 < hi {  // 's 't 're 've 'm 'll 'd
                let c1 = b[i + 1]
                if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { emit(i, i + 2); i += 2; continue }
                if i + 2 < hi {
                    let c2 = b[i + 2]
                    if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {
                        emit(i, i + 3); i += 3; continue
                    }
                }
            }
            var start = i
            if c0 == 0x20 && i + 1 < hi {
                let (c, _) = utf8Scalar(b, i + 1)
                if UnicodeClass.of(c) != UnicodeClass.space { start = i + 1 }
            }
            let (c, _) = utf8Scalar(b, start)
            let cls = UnicodeClass.of(c)
            let end: Int
            switch cls {
            case UnicodeClass.letter, UnicodeClass.number: end = run(b, start, hi, cls)
            case 0: end = otherRun(b, start, hi)
            default: end = whitespace(b, i, hi)
            }
            emit(i, end)
            i = end
        }
    }

    @inline(__always)
    static func isNewline(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D }

    static func scanLlama3(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, maxDigits: Int,
                           _ emit: (Int, Int) -> Void) {
        var i = lo
        while i < hi {
            let c0 = b[i]
            if c0 == 0x27 && i + 1 < hi {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                let c1 = b[i + 1] | 0x20
                if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { emit(i, i + 2); i += 2; continue }
                if i + 2 < hi {
                    let c2 = b[i + 2] | 0x20
                    if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {
                        emit(i, i + 3); i += 3; continue
                    }
                }
            }
            let (c, n) = utf8Scalar(b, i)
            let cls = UnicodeClass.of(c)
            if cls == UnicodeClass.letter {  // \p{L}+
                let end = run(b, i, hi, UnicodeClass.letter)
                emit(i, end); i = end; continue
            }
            if cls != UnicodeClass.number && !isNewline(c) && i + n < hi {  // [^\r\n\p{L}\p{N}]\p{L}+
                let (d, _) = utf8Scalar(b, i + n)
                if UnicodeClass.of(d) == UnicodeClass.letter {
                    let end = run(b, i + n, hi, UnicodeClass.letter)
                    emit(i, end); i = end; continue
                }
            }
            if cls == UnicodeClass.number {  // \p{N}{1,maxDigits}
                let end = run(b, i, hi, UnicodeClass.number, limit: maxDigits)
                emit(i, end); i = end; continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            var start = -1
            if cls == 0 {
                start = i
            } else if c == 0x20 && i + 1 < hi {
                let (d, _) = utf8Scalar(b, i + 1)
                if UnicodeClass.of(d) == 0 { start = i + 1 }
            }
            if start >= 0 {
                var end = otherRun(b, start, hi)
                while end < hi && (b[end] == 0x0A || b[end] == 0x0D) { end += 1 }
                emit(i, end); i = end; continue
            }
            // Whitespace: '\s*[\r\n]+' ends after the run's last newline, else '\s+(?!\S)|\s+'.
            var j = i
            var lastNewlineEnd = -1
            while j < hi {
                let (d, m) = utf8Scalar(b, j)
                guard UnicodeClass.of(d) == UnicodeClass.space else { break }
                j += m
                if isNewline(d) { lastNewlineEnd = j }
            }
            let end = lastNewlineEnd >= 0 ? lastNewlineEnd : whitespace(b, i, hi)
            emit(i, end)
            i = end
        }
    }
}
