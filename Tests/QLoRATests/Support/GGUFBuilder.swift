import Foundation

/// Writes GGUF images byte by byte for the reader's tests, including ones no real writer would
/// make (wrong counts, types, offsets). Little-endian throughout.
struct GGUFBuilder {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var tensorCount: UInt64? // nil: the number of tensor infos
    var kvCount: UInt64?     // nil: the number of KV pairs
    var alignment = 32
    private(set) var kvs: [[UInt8]] = []
    private(set) var infos: [[UInt8]] = []
    private(set) var data: [UInt8] = []

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    /// A KV pair with a raw type tag and payload.
    mutating func kv(_ key: String, type: UInt32, _ payload: [UInt8]) {
        kvs.append(GGUFBuilder.str(key) + GGUFBuilder.u32(type) + payload)
    }

    mutating func kvRaw(_ bytes: [UInt8]) { kvs.append(bytes) }

    /// A tensor info; its data (`bytes`) goes at the end of the data section, padded to the
    /// alignment, unless `offset` says where the info claims it is.
    mutating func tensor(_ name: String, ne: [UInt64], type: UInt32, bytes: [UInt8], offset: UInt64? = nil, nDims: UInt32? = nil) {
        let at = UInt64(data.count)
        data += bytes
        data += [UInt8](repeating: 0, count: (alignment - data.count % alignment) % alignment)
        var info = GGUFBuilder.str(name) + GGUFBuilder.u32(nDims ?? UInt32(ne.count))
        for n in ne { info += GGUFBuilder.u64(n) }
        info += GGUFBuilder.u32(type) + GGUFBuilder.u64(offset ?? at)
        infos.append(info)
    }

    func build() -> Data {
        var out = magic + GGUFBuilder.u32(version)
        out += GGUFBuilder.u64(tensorCount ?? UInt64(infos.count)) + GGUFBuilder.u64(kvCount ?? UInt64(kvs.count))
        for kv in kvs { out += kv }
        for info in infos { out += info }
        if !infos.isEmpty { out += [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment) }
        return Data(out + data)
    }

    /// F32 values as bytes.
    static func f32(_ values: [Float]) -> [UInt8] { values.flatMap { u32($0.bitPattern) } }
}
