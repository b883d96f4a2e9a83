import Foundation
@testable import QLoRA

extension GGUFBuilder {
    /// A KV pair from a typed value, encoded as GGUF writes it.
    mutating func kv(_ key: String, _ value: GGUFValue) {
        kv(key, type: value.type.rawValue, GGUFBuilder.payload(value))
    }

    static func payload(_ v: GGUFValue) -> [UInt8] {
        func le<T: FixedWidthInteger>(_ x: T) -> [UInt8] { withUnsafeBytes(of: x.littleEndian) { Array($0) } }
        switch v {
        case .uint8(let x): return [x]
        case .int8(let x): return [UInt8(bitPattern: x)]
        case .uint16(let x): return le(x)
        case .int16(let x): return le(x)
        case .uint32(let x): return le(x)
        case .int32(let x): return le(x)
        case .uint64(let x): return le(x)
        case .int64(let x): return le(x)
        case .float32(let x): return le(x.bitPattern)
        case .float64(let x): return le(x.bitPattern)
        case .bool(let x): return [x ? 1 : 0]
        case .string(let s): return str(s)
        case .array(let a):
            var out = u32(a.elementType.rawValue) + u64(UInt64(a.count))
            for i in 0..<a.count { out += payload(a[i]) }
            return out
        }
    }
}
