import Foundation
import QLoRA

/// Reads numpy's .npy format (versions 1–3): a little-endian float32, float64 or float16 array in
/// C order. Anything else is an error naming the file and what it holds.
enum NPYFile {
    static func read(_ data: Data, path: String) throws -> Tensor {
        let bytes = [UInt8](data)
        func bad(_ reason: String) -> QLoraError { .malformedFile(file: path, field: "npy header", reason: reason) }
        guard bytes.count >= 10, bytes.prefix(6) == [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] else {
            throw QLoraError.wrongFileType(file: path, expected: ".npy", reason: "it does not start with \\x93NUMPY")
        }
        let major = bytes[6]
        let lengthBytes = major == 1 ? 2 : 4
        guard [1, 2, 3].contains(major), bytes.count >= 8 + lengthBytes else { throw bad("unsupported version \(major)") }
        let headerLength = (0..<lengthBytes).reduce(0) { $0 | Int(bytes[8 + $1]) << (8 * $1) }
        let start = 8 + lengthBytes
        guard start + headerLength <= bytes.count else { throw bad("header of \(headerLength) bytes runs past the end of the file") }
        let header = String(decoding: bytes[start..<(start + headerLength)], as: UTF8.self)
        guard let descr = field("descr", in: header)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) else {
            throw bad("no 'descr'")
        }
        guard field("fortran_order", in: header)?.trimmingCharacters(in: .whitespaces) == "False" else {
            throw bad("fortran_order arrays are not supported; save with np.ascontiguousarray")
        }
        guard let shapeText = field("shape", in: header) else { throw bad("no 'shape'") }
        let shape = try shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .map { text -> Int in
                guard let n = Int(text), n >= 0 else { throw bad("shape \(shapeText) is not a tuple of sizes") }
                return n
            }
        let count = shape.reduce(1, *)
        let width: Int
        switch descr {
        case "<f4", "=f4": width = 4
        case "<f8", "=f8": width = 8
        case "<f2", "=f2": width = 2
        default: throw bad("dtype '\(descr)' is not supported (little-endian float32, float64 or float16 only)")
        }
        let payload = start + headerLength
        guard bytes.count - payload == count * width else {
            throw bad("shape \(shape) of '\(descr)' needs \(count * width) data bytes, the file has \(bytes.count - payload)")
        }
        let scalars: [Float] = data.withUnsafeBytes { raw in
            (0..<count).map { i in
                let at = payload + i * width
                switch width {
                case 4: return Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                case 8: return Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))))
                default: return floatFromHalfBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
                }
            }
        }
        return try Tensor(shape: shape.isEmpty ? [1] : shape, scalars: scalars)
    }

    /// The text of `'key': value` in the header dict, up to the next top-level comma.
    private static func field(_ key: String, in header: String) -> String? {
        guard let range = header.range(of: "'\(key)':") else { return nil }
        var depth = 0
        var out = ""
        for c in header[range.upperBound...] {
            if c == "(" { depth += 1 }
            if c == ")" { depth -= 1 }
            if (c == "," && depth == 0) || c == "}" { break }
            out.append(c)
        }
        return out.trimmingCharacters(in: .whitespaces)
    }
}
