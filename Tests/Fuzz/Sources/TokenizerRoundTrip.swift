import Foundation
import QLoRA

/// The tokenizer property on SmolLM2's byte-level BPE tokenizer (../shared/reference/smollm2, or
/// QLORA_FUZZ_TOKENIZER): for valid UTF-8 input s,
///
///     decode(encode(s)) == s.filter { every UTF-8 byte of the scalar has a vocabulary symbol }
///
/// The vocabulary has no symbol for the bytes 0x04 0x06 0x13 0x14 0x16 0x1d 0xc0 0xc1 0xf1 0xf2
/// 0xf5–0xff (manifest: "missing_byte_symbols"), and encode drops such a byte as `tokenizers`
/// does. In valid UTF-8 that touches exactly the scalars U+0004 U+0006 U+0013 U+0014 U+0016
/// U+001D (dropped whole) and U+40000…U+BFFFF (lead byte 0xf1/0xf2: the continuation bytes that
/// remain decode to U+FFFD each), so for those the property is only checked to hold on the rest.
/// Invalid UTF-8 input is skipped (a Swift String cannot hold it).
enum TokenizerRoundTrip {
    static let tokenizer: BPETokenizer = {
        let path = ProcessInfo.processInfo.environment["QLORA_FUZZ_TOKENIZER"]
            ?? "../shared/reference/smollm2/tokenizer/tokenizer.json"
        do { return try BPETokenizer.load(tokenizerJSON: path) } catch {
            fatalError("tokenizer-roundtrip needs SmolLM2's tokenizer.json: \(error)")
        }
    }()

    static let droppedASCII: Set<UInt32> = [0x04, 0x06, 0x13, 0x14, 0x16, 0x1d]

    static func check(_ bytes: [UInt8]) {
        guard let s = String(validating: bytes, as: UTF8.self) else { return }
        var expected = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            if droppedASCII.contains(u.value) { continue }
            if (0x40000...0xBFFFF).contains(u.value) { return }   // becomes U+FFFD×3: not a round trip
            expected.append(u)
        }
        let ids = tokenizer.encode(s)
        let back: String
        do { back = try tokenizer.decode(ids) } catch { fatalError("decode(encode(s)) threw \(error) for \(Array(s.utf8))") }
        guard back.unicodeScalars.elementsEqual(expected) else {
            fatalError("decode(encode(s)) != s for bytes \(Array(s.utf8)): got \(Array(back.utf8))")
        }
    }
}
