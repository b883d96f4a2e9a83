/// A bounds-checked little-endian reader over a GGUF image. Every read names the field it is
/// for, so a file that ends early fails with "<field>: needs N bytes at offset X, but the file
/// ends at Y". Lengths and counts from the file are checked against the bytes left before
/// anything is allocated from them.
struct GGUFCursor {
    let bytes: UnsafeRawBufferPointer
    let path: String
    private(set) var offset: Int

    init(_ bytes: UnsafeRawBufferPointer, path: String, offset: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    func error(_ field: String, _ reason: String) -> QLoraError {
        .malformedFile(file: path, field: field, reason: reason)
    }

    /// Throws unless `n` more bytes are there.
    func need(_ n: Int, _ field: String) throws {
        guard n <= remaining else { throw truncated(n, field) }
    }

    func truncated(_ n: Int, _ field: String) -> QLoraError {
        error(field, "needs \(n) bytes at offset \(offset), but the file ends at \(bytes.count) (truncated file?)")
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ field: String) throws -> T {
        try need(MemoryLayout<T>.size, field)
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func u8(_ field: String) throws -> UInt8 { try load(UInt8.self, field) }
    mutating func u32(_ field: String) throws -> UInt32 { try load(UInt32.self, field) }
    mutating func u64(_ field: String) throws -> UInt64 { try load(UInt64.self, field) }

    /// A u64 count of items of at least `minimumSize` bytes each that must fit in what is left.
    mutating func count(_ field: String, minimumSize: Int, what: String) throws -> Int {
        let at = offset
        let n = try u64(field)
        guard minimumSize > 0 ? n <= UInt64(remaining / minimumSize) : n <= UInt64(Int.max) else {
            throw error(field, "\(n) \(what) (at offset \(at)) cannot fit in the \(remaining) bytes left in the file (each takes at least \(minimumSize))")
        }
        return Int(n)
    }

    /// A GGUF string: u64 byte length, then that many bytes of UTF-8. `index` (an array
    /// element's) is only formatted into the field name when there is an error.
    mutating func string(_ field: String, index: Int? = nil) throws -> String {
        func name() -> String { index.map { "\(field)[\($0)]" } ?? field }
        let at = offset
        guard remaining >= 8 else { throw truncated(8, name() + " length") }
        let n = try u64(field)
        guard n <= UInt64(remaining) else {
            throw error(name(), "string length \(n) (at offset \(at)) runs past the end of the file (\(remaining) bytes left)")
        }
        let raw = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + Int(n))])
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw error(name(), "the \(n)-byte string at offset \(at + 8) is not valid UTF-8")
        }
        offset += Int(n)
        return s
    }

    /// `n` fixed-size little-endian values.
    mutating func array<T: FixedWidthInteger>(_: T.Type, count n: Int, _ field: String) throws -> [T] {
        try need(n * MemoryLayout<T>.size, field)
        let base = offset
        let out = [T](unsafeUninitializedCapacity: n) { buf, initialized in
            for i in 0..<n {
                buf[i] = T(littleEndian: bytes.loadUnaligned(fromByteOffset: base + i * MemoryLayout<T>.size, as: T.self))
            }
            initialized = n
        }
        offset += n * MemoryLayout<T>.size
        return out
    }
}
