/// GPT-2's byte-to-unicode map, used by every byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3,
/// Qwen 2): each byte becomes one printable character so vocabulary entries are strings. Bytes
/// `!`...`~`, `¡`...`¬` and `®`...`ÿ` map to themselves; the other 68 bytes map, in byte order,
/// to U+0100, U+0101, ... (so the space 0x20 is `Ġ` U+0120 and the newline 0x0A is `Ċ` U+010A).
public enum ByteLevelAlphabet {
    /// `scalar[b]` is the character byte `b` is written as.
    public static let scalars: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The byte a character stands for (nil for characters outside the alphabet).
    public static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let v = scalar.value
        if v < 0x144 { return inverse[Int(v)] }
        return nil
    }

    private static let inverse: [UInt8?] = {
        var table = [UInt8?](repeating: nil, count: 0x144)
        for (b, s) in scalars.enumerated() { table[Int(s.value)] = UInt8(b) }
        return table
    }()

    /// The bytes a byte-level token string stands for, or nil if a character is outside the
    /// alphabet (added tokens such as `<|im_start|>` are inside it: printable ASCII maps to itself).
    public static func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.unicodeScalars.count)
        for s in token.unicodeScalars {
            guard let b = byte(for: s) else { return nil }
            out.append(b)
        }
        return out
    }

    /// The byte-level spelling of raw bytes.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(scalars[Int(b)]) }
        return String(s)
    }
}
