/// The parts of a SentencePiece `tokenizer.model` (a protobuf ModelProto) that encoding needs,
/// read with a minimal protobuf wire-format reader (no dependency): the pieces (piece, score,
/// type), the trainer spec's model type, byte_fallback and special ids, and the normalizer
/// spec's flags. Field numbers are those of sentencepiece_model.proto.
struct SentencePieceModelFile {
    enum PieceType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    var pieces: [String] = []
    var scores: [Float] = []
    var types: [PieceType] = []
    /// TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char.
    var modelType = 1
    var byteFallback = false
    var unkId = 0, bosId = 1, eosId = 2, padId = -1
    var normalizerName = "nmt_nfkc"
    var precompiledCharsmap: [UInt8] = []
    var addDummyPrefix = true
    var removeExtraWhitespaces = true
    var escapeWhitespaces = true

    init(_ bytes: [UInt8], file: String) throws {
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: field, reason: reason) }
        try ProtobufReader.fields(bytes, 0..<bytes.count, file: file, at: "ModelProto") { number, value in
            switch (number, value) {
            case (1, .bytes(let r)):
                var piece = "", score: Float = 0, type = PieceType.normal
                try ProtobufReader.fields(bytes, r, file: file, at: "pieces[\(pieces.count)]") { n, v in
                    switch (n, v) {
                    case (1, .bytes(let s)): piece = String(decoding: bytes[s], as: UTF8.self)
                    case (2, .fixed32(let f)): score = Float(bitPattern: f)
                    case (3, .varint(let t)):
                        guard let pt = PieceType(rawValue: Int(t)) else { throw bad("pieces[\(pieces.count)].type", "unknown piece type \(t)") }
                        type = pt
                    default: break
                    }
                }
                pieces.append(piece); scores.append(score); types.append(type)
            case (2, .bytes(let r)):
                try ProtobufReader.fields(bytes, r, file: file, at: "trainer_spec") { n, v in
                    guard case .varint(let x) = v else { return }
                    let i = Int(Int32(truncatingIfNeeded: x))
                    switch n {
                    case 3: modelType = i
                    case 35: byteFallback = x != 0
                    case 40: unkId = i
                    case 41: bosId = i
                    case 42: eosId = i
                    case 43: padId = i
                    default: break
                    }
                }
            case (3, .bytes(let r)):
                try ProtobufReader.fields(bytes, r, file: file, at: "normalizer_spec") { n, v in
                    switch (n, v) {
                    case (1, .bytes(let s)): normalizerName = String(decoding: bytes[s], as: UTF8.self)
                    case (2, .bytes(let s)): precompiledCharsmap = Array(bytes[s])
                    case (3, .varint(let x)): addDummyPrefix = x != 0
                    case (4, .varint(let x)): removeExtraWhitespaces = x != 0
                    case (5, .varint(let x)): escapeWhitespaces = x != 0
                    default: break
                    }
                }
            default: break
            }
        }
        guard !pieces.isEmpty else { throw bad("pieces", "no pieces: not a SentencePiece model") }
    }
}

/// Protobuf wire format: (field number, value) pairs; length-delimited values as byte ranges.
enum ProtobufReader {
    enum Value { case varint(UInt64), fixed64(UInt64), bytes(Range<Int>), fixed32(UInt32) }

    static func fields(_ b: [UInt8], _ range: Range<Int>, file: String, at: String,
                       _ body: (Int, Value) throws -> Void) throws {
        func bad(_ offset: Int, _ reason: String) -> QLoraError {
            .malformedFile(file: file, field: "\(at) (byte \(offset))", reason: reason)
        }
        var i = range.lowerBound
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard i < range.upperBound else { throw bad(i, "truncated varint") }
                let byte = b[i]; i += 1
                guard shift < 64 else { throw bad(i, "varint longer than 10 bytes") }
                v |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return v }
                shift += 7
            }
        }
        while i < range.upperBound {
            let start = i
            let key = try varint()
            let number = Int(key >> 3)
            switch key & 7 {
            case 0: try body(number, .varint(try varint()))
            case 1:
                guard i + 8 <= range.upperBound else { throw bad(start, "truncated fixed64") }
                var v: UInt64 = 0
                for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
                i += 8
                try body(number, .fixed64(v))
            case 2:
                let n = try varint()
                guard n <= UInt64(range.upperBound - i) else { throw bad(start, "field \(number): length \(n) runs past the end") }
                let r = i..<(i + Int(n))
                i += Int(n)
                try body(number, .bytes(r))
            case 5:
                guard i + 4 <= range.upperBound else { throw bad(start, "truncated fixed32") }
                let v = UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
                i += 4
                try body(number, .fixed32(v))
            default:
                throw bad(start, "wire type \(key & 7) of field \(number) is not supported (not a SentencePiece model?)")
            }
        }
    }
}
