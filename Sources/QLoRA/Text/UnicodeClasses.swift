/// The character classes the pre-tokenizer patterns test (`\p{L}`, `\p{N}`, `\s` as Oniguruma
/// reads them in Hugging Face tokenizers: general categories L* and N*, and the Unicode
/// White_Space property), and UTF-8 decoding of the (valid) text being split.
enum UnicodeClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let space: UInt8 = 4

    static func compute(_ v: UInt32) -> UInt8 {
        guard let s = Unicode.Scalar(v) else { return 0 }
        let p = s.properties
        if p.isWhitespace { return space }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return 0
        }
    }

    /// Classes of the Basic Multilingual Plane, computed once (64 KiB).
    static let bmp: [UInt8] = (0..<0x10000).map { compute(UInt32($0)) }

    @inline(__always)
    static func of(_ v: UInt32) -> UInt8 {
        v < 0x10000 ? bmp[Int(v)] : compute(v)
    }

    /// `\p{P}`: general categories Pc, Pd, Ps, Pe, Pi, Pf, Po (llama.cpp's falcon, default and
    /// deepseek-coder pre-tokenizers).
    static func isPunctuation(_ v: UInt32) -> Bool {
        if v < 0x10000 { return bmpPunctuation[Int(v)] }
        return computePunctuation(v)
    }

    static func computePunctuation(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
             .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    static let bmpPunctuation: [Bool] = (0..<0x10000).map { computePunctuation(UInt32($0)) }

    /// A `\w` character as the Rust regex crate reads it (Alphabetic, marks, decimal digits,
    /// connector punctuation, Join_Control): added tokens' `single_word` test.
    static func isWordCharacter(_ v: UInt32) -> Bool {
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

/// Decodes the scalar starting at `i` of valid UTF-8: (value, length in bytes).
@inline(__always)
func utf8Scalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
    let c0 = UInt32(b[i])
    if c0 < 0x80 { return (c0, 1) }
    if c0 < 0xE0 { return (((c0 & 0x1F) << 6) | (UInt32(b[i + 1]) & 0x3F), 2) }
    if c0 < 0xF0 {
        return (((c0 & 0x0F) << 12) | ((UInt32(b[i + 1]) & 0x3F) << 6) | (UInt32(b[i + 2]) & 0x3F), 3)
    }
    return (((c0 & 0x07) << 18) | ((UInt32(b[i + 1]) & 0x3F) << 12) | ((UInt32(b[i + 2]) & 0x3F) << 6)
            | (UInt32(b[i + 3]) & 0x3F), 4)
}
