import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only, memory-mapped safetensors file. Opening validates the whole header (see
/// `SafeTensorsHeader`); tensor data is only touched when asked for. Every problem with the file
/// is a `QLoraError.malformedFile` naming the file, the tensor or field, and the reason.
public struct SafeTensorsFile: Sendable {
    /// The path used in error messages.
    public let path: String
    /// `__metadata__` of the header (empty when absent).
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let names: [String]
    private let entries: [String: SafeTensorInfo]
    /// The data region (everything after the header).
    private let data: Data

    /// True when `data` is a read-only file mapping (its pages can be dropped and re-read).
    private var isMapped = false

    /// Maps the file at `url` and validates its header.
    public init(url: URL) throws {
        try self.init(data: SafeTensorsFile.map(url.path), path: url.path)
        isMapped = !data.isEmpty
    }

    /// Parses an in-memory safetensors image; `path` only names it in errors.
    public init(data file: Data, path: String) throws {
        self.path = path
        func bad(_ field: String, _ reason: String) -> QLoraError { .malformedFile(file: path, field: field, reason: reason) }
        guard file.count >= 8 else {
            throw bad("header length", "file is \(file.count) bytes, too short for the 8-byte header length")
        }
        let n = file.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let available = file.count - 8
        guard n <= UInt64(available) else {
            if let text = SafeTensorsFile.textPrefix(file) {
                throw QLoraError.wrongFileType(file: path, expected: "safetensors",
                                               reason: "it starts with the text \"\(text)…\" (a safetensors file starts with an 8-byte header length, then its JSON header)")
            }
            if available > 0, file[file.startIndex + 8] != UInt8(ascii: "{") {
                throw QLoraError.wrongFileType(file: path, expected: "safetensors",
                                               reason: "its first 8 bytes give a header length of \(n) bytes, more than the \(available) that follow, and no JSON header starts after them")
            }
            throw bad("header length", "\(n) bytes but only \(available) bytes follow the length (truncated file?)")
        }
        guard n <= UInt64(SafeTensorsHeader.maxHeaderBytes) else {
            throw bad("header length", "\(n) bytes exceeds the \(SafeTensorsHeader.maxHeaderBytes)-byte limit")
        }
        let start = file.startIndex
        let headerBytes = [UInt8](file[(start + 8)..<(start + 8 + Int(n))])
        let header = try SafeTensorsHeader(json: headerBytes, dataLength: available - Int(n), file: path)
        metadata = header.metadata
        entries = header.entries
        names = header.entries.keys.sorted()
        data = file[(start + 8 + Int(n))...]
    }

    /// mmap(2)s a whole file; the mapping lives as long as the returned Data (GGUFFile uses it too).
    static func map(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFile.error(path, "cannot open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw POSIXFile.error(path, "cannot stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw QLoraError.io(file: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 { return Data() }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw POSIXFile.error(path, "cannot map")
        }
        return Data(bytesNoCopy: base, count: size, deallocator: .custom { p, n in munmap(p, n) })
    }

    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// dtype, shape and data offsets of a tensor.
    public func info(_ name: String) throws -> SafeTensorInfo {
        guard let info = entries[name] else {
            throw QLoraError.malformedFile(file: path, field: name, reason: "no such tensor in the file")
        }
        return info
    }

    /// The tensor's raw little-endian bytes, without copying (a slice of the mapping).
    public func rawData(_ name: String) throws -> Data {
        let r = try info(name).dataOffsets
        return data[(data.startIndex + r.lowerBound)..<(data.startIndex + r.upperBound)]
    }

    /// Calls `body` on an F32 tensor's elements where they lie in the file, without a copy; nil
    /// when the tensor is not F32, not 4-byte aligned in memory, or the host is big-endian.
    func withFloatsInPlace<R>(_ name: String, _ body: (UnsafeBufferPointer<Float>) throws -> R) throws -> R? {
        let info = try info(name)
        guard info.dtype == .f32, 1.littleEndian == 1 else { return nil }
        return try rawData(name).withUnsafeBytes { raw -> R? in
            guard let base = raw.baseAddress, Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 else { return nil }
            return try body(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Float.self), count: info.elementCount))
        }
    }

    /// Drops the resident pages of a tensor's bytes in a mapped file (they are read again from the
    /// file if touched later), so streaming over a checkpoint keeps about one tensor resident.
    /// Does nothing for an in-memory image.
    public func releasePages(_ name: String) {
        guard isMapped, let r = entries[name]?.dataOffsets, !r.isEmpty else { return }
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let start = Int(bitPattern: base + r.lowerBound) / page * page
            let end = Int(bitPattern: base + r.upperBound)
            madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
        }
    }

    /// The tensor's raw bytes, copied.
    public func bytes(_ name: String) throws -> [UInt8] { [UInt8](try rawData(name)) }

    /// A floating-point tensor (F32, F16, BF16 or F64) converted to Float32 with its shape.
    /// F16/BF16 widen exactly; F64 rounds to nearest.
    public func tensor(_ name: String) throws -> Tensor {
        let info = try info(name)
        return try Tensor(shape: info.shape, scalars: floats(name))
    }

    /// The elements of a floating-point tensor as Float32, flattened.
    public func floats(_ name: String) throws -> [Float] {
        let info = try info(name)
        guard info.dtype.isFloatingPoint else {
            throw QLoraError.malformedFile(file: path, field: "\(name).dtype",
                                           reason: "expected a floating-point tensor, got \(info.dtype.rawValue)")
        }
        let raw = try rawData(name)
        let n = info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { out, initialized in
            raw.withUnsafeBytes { src in
                switch info.dtype {
                case .f32:
                    for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
                case .f16:
                    for i in 0..<n { out[i] = floatFromHalfBits(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                case .bf16:
                    for i in 0..<n { out[i] = floatFromBFloat16Bits(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                case .f64:
                    for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
                default:
                    break
                }
            }
            initialized = n
        }
    }

    /// The first bytes of a file that begins with text (printable ASCII or whitespace in all of its
    /// first 8 bytes, which a safetensors header length never is), escaped for one line; else nil.
    static func textPrefix(_ file: Data) -> String? {
        let head = file.prefix(24)
        guard head.count >= 8, head.prefix(8).allSatisfy({ (0x20...0x7e).contains($0) || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d }) else { return nil }
        let printable = head.prefix { (0x20...0x7e).contains($0) || $0 == 0x09 || $0 == 0x0a || $0 == 0x0d }
        return String(decoding: printable, as: UTF8.self).replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\"", with: "\\\"")
    }
}

extension SafeTensorsFile {
    /// An integer tensor (I32, or I64 whose values fit in Int32) as an `IntTensor`: token ids, labels.
    public func intTensor(_ name: String) throws -> IntTensor {
        let info = try info(name)
        let raw = try rawData(name)
        let n = info.elementCount
        var values = [Int32](repeating: 0, count: n)
        switch info.dtype {
        case .i32:
            raw.withUnsafeBytes { b in for i in 0..<n { values[i] = Int32(littleEndian: b.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) } }
        case .i64:
            for i in 0..<n {
                let v = raw.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
                guard let w = Int32(exactly: v) else {
                    throw QLoraError.malformedFile(file: path, field: name, reason: "value \(v) at flat index \(i) does not fit in int32")
                }
                values[i] = w
            }
        default:
            throw QLoraError.malformedFile(file: path, field: "\(name).dtype", reason: "expected I32 or I64 (token ids), got \(info.dtype.rawValue)")
        }
        return try IntTensor(shape: info.shape, scalars: values)
    }
}
