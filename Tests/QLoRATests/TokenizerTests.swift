import Foundation
import XCTest
@testable import QLoRA

/// The byte-level BPE tokenizer against SmolLM2's reference (../shared/reference/smollm2/tokenizer,
/// made by transformers 5.24 / tokenizers 0.23.3): every string of encodings.json encodes to its
/// ids (and the llama.cpp `smollm` emulation where given), decodes per decodes.json, random text
/// round-trips, and streaming decode equals whole decode.
final class TokenizerTests: XCTestCase {
    static let dir = "smollm2/tokenizer"
    static let tokenizer: Result<BPETokenizer, Error> = Result {
        try BPETokenizer.load(tokenizerJSON: Reference.url("\(dir)/tokenizer.json").path)
    }

    func smol() throws -> BPETokenizer { try TokenizerTests.tokenizer.get() }

    func referenceJSON(_ name: String) throws -> [JSONValue] {
        let v = try JSONValue.parse(try Reference.bytes("\(TokenizerTests.dir)/\(name)"), file: name, field: "(root)")
        guard case .array(let items) = v else { throw QLoraError.malformedFile(file: name, field: "(root)", reason: "not an array") }
        return items
    }

    func ints(_ v: JSONValue?) -> [Int]? {
        guard case .array(let a)? = v else { return nil }
        return a.map { if case .int(let i) = $0 { return i } else { return -1 } }
    }

    func testLoadsSmolLM2() throws {
        let t = try smol()
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.addedTokens.count, 17)
        XCTAssertEqual(t.bosTokenId, 1)
        XCTAssertEqual(t.eosTokenId, 2)
        XCTAssertEqual(t.padTokenId, 2)
        XCTAssertEqual(t.preTokenizer, .byteLevel(addPrefixSpace: false, useRegex: true))
        XCTAssertEqual(t.id(of: "<|im_start|>"), 1)
        XCTAssertEqual(t.token(of: 905), "\u{120}world")
        XCTAssertTrue(t.isSpecialToken(16))
        XCTAssertFalse(t.isSpecialToken(17))
        // tokenizer_config.json has no add_bos_token and the post-processor adds nothing.
        XCTAssertEqual(t.encode("Hello world", addSpecialTokens: true), [19556, 905])
    }

    func testEncodingsMatchReference() throws {
        let t = try smol()
        let llama = t.withPreTokenizer(try PreTokenizer.llamaCpp(pre: "smollm"))
        let cases = try referenceJSON("encodings.json")
        XCTAssertEqual(cases.count, 186)
        var checkedSplit = 0, checkedLlama = 0
        for c in cases {
            guard case .string(let text)? = c["text"], let ids = ints(c["ids"]),
                  case .string(let decoded)? = c["decoded"] else { XCTFail("bad case \(c)"); continue }
            XCTAssertEqual(t.encode(text), ids, "encode \(text.debugDescription)")
            XCTAssertEqual(try t.decode(ids), decoded, "decode of \(text.debugDescription)")
            if let split = ints(c["ids_split_special_tokens"]) {
                XCTAssertEqual(t.encode(text, splitSpecialTokens: true), split, "split_special_tokens \(text.debugDescription)")
                checkedSplit += 1
            }
            let expectedLlama = ints(c["ids_llamacpp_smollm_pretokenizer_emulated"]) ?? ids
            if c["ids_llamacpp_smollm_pretokenizer_emulated"] != nil { checkedLlama += 1 }
            XCTAssertEqual(llama.encode(text), expectedLlama, "llama.cpp smollm \(text.debugDescription)")
        }
        XCTAssertEqual(checkedSplit, 10)
        XCTAssertEqual(checkedLlama, 2)
    }

    func testDecodesMatchReference() throws {
        let t = try smol()
        let cases = try referenceJSON("decodes.json")
        XCTAssertEqual(cases.count, 20)
        for c in cases {
            guard let ids = ints(c["ids"]), case .bool(let skip)? = c["skip_special_tokens"],
                  case .string(let decoded)? = c["decoded"] else { XCTFail("bad case \(c)"); continue }
            XCTAssertEqual(try t.decode(ids, skipSpecialTokens: skip), decoded, "decode \(ids) skip=\(skip)")
            XCTAssertEqual(try streamed(t, ids, skip: skip), decoded, "streamed \(ids) skip=\(skip)")
        }
    }

    func streamed(_ t: BPETokenizer, _ ids: [Int], skip: Bool = false) throws -> String {
        var d = t.makeStreamingDecoder(skipSpecialTokens: skip)
        var s = ""
        for id in ids { s += try d.push(id) }
        return s + d.finish()
    }

    /// A seeded generator of valid text rich in what tokenizers get wrong. Bytes SmolLM2's
    /// vocabulary lacks (see the manifest) are avoided: such characters cannot round-trip.
    static func randomText(_ rng: inout SplitMix64, length: Int) -> String {
        let pools: [[ClosedRange<UInt32>]] = [
            [0x61...0x7A, 0x41...0x5A], [0x30...0x39], [0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E],
            [0x20...0x20, 0x09...0x0A, 0x0D...0x0D, 0xA0...0xA0, 0x3000...0x3000, 0x2003...0x2003],
            [0xC0...0x17F], [0x300...0x36F], [0x4E00...0x9FFF], [0x1F600...0x1F64F, 0x1F300...0x1F5FF],
            [0x600...0x6FF], [0x900...0x97F], [0xAC00...0xD7A3], [0x0370...0x03FF, 0x0400...0x04FF],
            [0xA1...0x2FFF], [0x27...0x27],
        ]
        var s = String.UnicodeScalarView()
        for _ in 0..<length {
            switch rng.next() % 40 {
            case 0: s.append(contentsOf: "<|im_start|>".unicodeScalars)
            case 1: s.append(contentsOf: "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}".unicodeScalars)
            case 2: s.append(contentsOf: ["'s", "'ll", "'RE", " 's", "n't"][Int(rng.next() % 5)].unicodeScalars)
            case 3: for _ in 0..<(rng.next() % 6) { s.append(" ") }
            default:
                let pool = pools[Int(rng.next() % UInt64(pools.count))]
                let r = pool[Int(rng.next() % UInt64(pool.count))]
                let v = r.lowerBound + UInt32(rng.next() % UInt64(r.upperBound - r.lowerBound + 1))
                if let u = Unicode.Scalar(v), ![0x04, 0x06, 0x13, 0x14, 0x16, 0x1D].contains(v) { s.append(u) }
            }
        }
        return String(s)
    }

    func testRandomTextRoundTripsAndStreams() throws {
        let t = try smol()
        var rng = SplitMix64(seed: 20261130)
        for n in 0..<400 {
            let text = TokenizerTests.randomText(&rng, length: 1 + n % 60)
            let ids = t.encode(text)
            XCTAssertEqual(try t.decode(ids), text, "round trip of \(text.debugDescription)")
            XCTAssertEqual(try streamed(t, ids), text, "streamed \(text.debugDescription)")
            let skipped = try t.decode(ids, skipSpecialTokens: true)
            XCTAssertEqual(try streamed(t, ids, skip: true), skipped)
        }
    }

    func testStreamingHoldsBackIncompleteCharacters() throws {
        let t = try smol()
        var d = t.makeStreamingDecoder()
        XCTAssertEqual(try d.push(10813), "")          // F0 9F: half an emoji
        XCTAssertEqual(try d.push(242), "")            // + 98
        XCTAssertEqual(try d.push(218), "\u{1F600}")   // + 80: 😀
        XCTAssertEqual(try d.push(10813), "")
        XCTAssertEqual(d.finish(), "\u{FFFD}")
        XCTAssertEqual(StreamingDecoder.incompleteTail([0x41, 0xE0, 0x80]), 0)  // E0 80 is never valid
        XCTAssertEqual(StreamingDecoder.incompleteTail([0x41, 0xE0, 0xA0]), 2)
        XCTAssertEqual(StreamingDecoder.incompleteTail([0xF4, 0x90]), 0)        // beyond U+10FFFF
        XCTAssertEqual(StreamingDecoder.incompleteTail([0xC3]), 1)
    }

    func testDecodeRejectsIdsOutOfRange() throws {
        let t = try smol()
        XCTAssertThrowsError(try t.decode([19556, 49152])) { e in
            XCTAssertEqual(e as? QLoraError, .invalidArgument("token id 49152 at position 1 is out of range 0..<49152"))
        }
        XCTAssertThrowsError(try t.decode([-1]))
        var d = t.makeStreamingDecoder()
        XCTAssertThrowsError(try d.push(1 << 20))
    }

    /// Long pieces merge with a heap; it gives what the rescanning loop gives, and a 300 KB
    /// single piece (a run of letters) encodes in well under a second and round-trips.
    func testHeapMergeEqualsScanMergeOnLongPieces() throws {
        let t = try smol()
        var rng = SplitMix64(seed: 7)
        for n in [49, 64, 200, 1000] {
            for _ in 0..<20 {
                let text = TokenizerTests.randomText(&rng, length: n).unicodeScalars.filter { $0.properties.isAlphabetic }
                var bytes = Array(String(String.UnicodeScalarView(text)).utf8)
                if bytes.count < 2 { bytes = Array("abababab".utf8) }
                let sym = bytes.map { t.model.byteToken[Int($0)] }.filter { $0 != UInt32.max }
                var a = sym, b = sym
                var ranks: [UInt64] = []
                t.model.mergeByScan(&a, &ranks)
                t.model.mergeWithHeap(&b)
                XCTAssertEqual(a, b, "\(bytes.count) bytes")
            }
        }
        let long = String(repeating: "tokenization", count: 25_000)
        let start = Date()
        let ids = t.encode(long)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(try t.decode(ids), long)
    }
}
