import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a safetensors file the way the Python library does: data ordered by element size
/// (largest first) then by name, header keys in that order, header padded with spaces to a
/// multiple of 8 bytes.
///
/// Tensors are streamed: each `add` appends its bytes to an anonymous spill file right away, so
/// memory stays bounded by one tensor. `commit()` writes header + data to a temporary file in
/// the destination directory, fsyncs it, renames it over the destination and fsyncs the
/// directory; nothing appears at the destination unless the whole file was written (a killed
/// process leaves the previous file, CrashSafetyTests), and a failed commit removes its temporary. Dropping the writer without `commit()` leaves
/// no file behind.
public final class SafeTensorsWriter {
    public let url: URL
    public var metadata: [String: String]
    private struct Entry { let name: String; let dtype: SafeTensorsDType; let shape: [Int]; let spillOffset: Int; let count: Int }
    private var entries: [Entry] = []
    private var names = Set<String>()
    private let spill: POSIXFile
    private var spillSize = 0
    private var committed = false

    public init(url: URL, metadata: [String: String] = [:]) throws {
        self.url = url
        self.metadata = metadata
        let spillPath = POSIXFile.siblingPath(of: url, suffix: "spill")
        spill = try POSIXFile(creating: spillPath)
        unlink(spillPath)  // anonymous from now on: freed on close, even after a crash
    }

    /// Total bytes of tensor data added so far.
    public var dataBytes: Int { spillSize }

    /// Adds a tensor from raw little-endian bytes; `bytes.count` must equal the shape's size.
    public func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        guard !committed else { throw QLoraError.invalidArgument("SafeTensorsWriter for \(url.path) used after commit()") }
        guard !name.isEmpty, name != "__metadata__" else { throw QLoraError.invalidArgument("invalid tensor name \"\(name)\"") }
        guard !names.contains(name) else { throw QLoraError.invalidArgument("tensor \"\(name)\" added twice to \(url.path)") }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw QLoraError.invalidArgument("tensor \"\(name)\": negative dimension in \(shape)") }
        let count = try Tensor.elementCount(shape)
        guard count.multipliedReportingOverflow(by: dtype.size) == (bytes.count, false) else {
            throw QLoraError.shapeMismatch(context: "safetensors entry \(name) (\(dtype.rawValue) bytes)",
                                           expected: [count * dtype.size], actual: [bytes.count])
        }
        if bytes.count > 0 { try spill.write(bytes) }
        entries.append(Entry(name: name, dtype: dtype, shape: shape, spillOffset: spillSize, count: bytes.count))
        names.insert(name)
        spillSize += bytes.count
    }

    public func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], data: Data) throws {
        try data.withUnsafeBytes { try add(name, dtype: dtype, shape: shape, bytes: $0) }
    }

    public func add(_ name: String, u8 bytes: [UInt8], shape: [Int]) throws {
        try bytes.withUnsafeBytes { try add(name, dtype: .u8, shape: shape, bytes: $0) }
    }

    /// Adds an F32 tensor (little-endian on every host).
    public func add(_ name: String, floats: [Float], shape: [Int]) throws {
        if 1.littleEndian == 1 {   // no converted copy: a dequantized tensor may be most of the memory in use
            try floats.withUnsafeBytes { try add(name, dtype: .f32, shape: shape, bytes: $0) }
            return
        }
        let le = floats.map { $0.bitPattern.littleEndian }
        try le.withUnsafeBytes { try add(name, dtype: .f32, shape: shape, bytes: $0) }
    }

    public func add(_ name: String, tensor: Tensor) throws {
        try add(name, floats: tensor.scalars, shape: tensor.shape)
    }

    /// The header JSON, unpadded (compact, like serde_json).
    private func headerJSON(_ ordered: [Entry]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { compactQuoted($0) + ":" + compactQuoted(metadata[$0]!) }
            parts.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        var offset = 0
        for e in ordered {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append(compactQuoted(e.name) + ":{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.count)]}")
            offset += e.count
        }
        return Array(("{" + parts.joined(separator: ",") + "}").utf8)
    }

    /// Writes the file atomically. Returns the number of bytes written.
    @discardableResult
    public func commit() throws -> Int {
        guard !committed else { throw QLoraError.invalidArgument("SafeTensorsWriter for \(url.path) committed twice") }
        committed = true
        let ordered = entries.sorted { ($0.dtype.size, $1.name) > ($1.dtype.size, $0.name) }
        var header = headerJSON(ordered)
        header.append(contentsOf: [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8))
        let tempPath = POSIXFile.siblingPath(of: url, suffix: "tmp")
        do {
            let out = try POSIXFile(creating: tempPath)
            var length = UInt64(header.count).littleEndian
            try withUnsafeBytes(of: &length) { try out.write($0) }
            try out.write(header)
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 22, alignment: 64)
            defer { chunk.deallocate() }
            for e in ordered {
                var done = 0
                while done < e.count {
                    let piece = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<min(chunk.count, e.count - done)])
                    try spill.read(at: e.spillOffset + done, into: piece)
                    try out.write(UnsafeRawBufferPointer(piece))
                    done += piece.count
                }
            }
            try out.sync()
            try out.closeFile()
            guard rename(tempPath, url.path) == 0 else { throw POSIXFile.error(url.path, "cannot rename \(tempPath) to it") }
        } catch {
            unlink(tempPath)
            throw error
        }
        try POSIXFile.syncDirectory(of: url.path)
        return 8 + header.count + spillSize
    }
}

/// A JSON string literal as serde_json writes it (only quotes, backslashes and control
/// characters escaped; other characters as UTF-8).
func compactQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        case "\u{00}"..."\u{1F}":
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
