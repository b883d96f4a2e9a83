import Foundation
import CQLoRAKernels

/// A read-only, memory-mapped GGUF file (llama.cpp's format, versions 2 and 3). Opening parses
/// and checks the header, all metadata and all tensor infos (`GGUFLayout`); tensor data is only
/// touched when asked for. Every problem is a `QLoraError` naming the file, the field and the
/// byte offset.
public struct GGUFFile: Sendable {
    /// The path used in error messages.
    public let path: String
    /// 2 or 3 (same layout; 3 allows big-endian files, which are not read).
    public let version: UInt32
    public let metadata: GGUFMetadata
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    /// general.alignment, or 32.
    public let alignment: Int
    /// Absolute offset of the data section (tensor offsets are relative to it).
    public let dataOffset: Int
    private let index: [String: Int]
    private let data: Data

    /// Maps the file at `url` and checks its layout.
    public init(url: URL) throws {
        try self.init(data: SafeTensorsFile.map(url.path), path: url.path)
    }

    /// Parses an in-memory GGUF image; `path` only names it in errors.
    public init(data: Data, path: String) throws {
        self.path = path
        let layout = try data.withUnsafeBytes { try GGUFLayout(bytes: $0, path: path) }
        version = layout.version
        metadata = GGUFMetadata(entries: layout.metadata, path: path)
        tensors = layout.tensors
        alignment = layout.alignment
        dataOffset = layout.dataOffset
        var index = [String: Int]()
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
        self.data = data
    }

    /// Tensor names in file order.
    public var names: [String] { tensors.map(\.name) }
    public var fileSize: Int { data.count }
    public func contains(_ name: String) -> Bool { index[name] != nil }

    public func info(_ name: String) throws -> GGUFTensorInfo {
        guard let i = index[name] else {
            throw QLoraError.missingTensor(file: path, name: name, neededBy: "GGUF tensor lookup",
                                           suggestions: NameSuggestions.near(name, in: names))
        }
        return tensors[i]
    }

    /// The tensor's raw bytes (a slice of the mapping, no copy).
    public func rawData(_ name: String) throws -> Data {
        let t = try info(name)
        let start = data.startIndex + dataOffset + t.offset
        return data[start..<(start + t.byteCount)]
    }

    /// Raw bytes of rows [rows.lowerBound, rows.upperBound) (a slice of the mapping).
    public func rawRows(_ name: String, _ rows: Range<Int>) throws -> Data {
        let t = try info(name)
        try check(rows, of: t)
        let start = data.startIndex + dataOffset + t.offset + rows.lowerBound * t.rowBytes
        return data[start..<(start + rows.count * t.rowBytes)]
    }

    /// Every element as Float32, row-major (ne[0] fastest), decoded exactly as ggml / gguf-py.
    public func dequantize(_ name: String, threads: Int = Runtime.defaultThreads) throws -> [Float] {
        let t = try info(name)
        return try dequantizeRows(name, 0..<t.rows, threads: threads)
    }

    /// Rows [rows.lowerBound, rows.upperBound) as Float32 (rows.count × columns values).
    public func dequantizeRows(_ name: String, _ rows: Range<Int>, threads: Int = Runtime.defaultThreads) throws -> [Float] {
        let t = try info(name)
        try check(rows, of: t)
        guard t.type.canDequantize else {
            throw QLoraError.unsupported("\(path): tensor '\(name)' is \(t.type.name); dequantization reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q6_K")
        }
        let raw = try rawRows(name, rows)
        let n = rows.count * t.columns
        return try raw.withUnsafeBytes { src in
            try [Float](unsafeUninitializedCapacity: n) { out, initialized in
                try ggmlDequantize(t.type, src, elements: n, into: out, threads: threads)
                initialized = n
            }
        }
    }

    /// The tensor as a `Tensor` of shape `info.shape` (ne reversed).
    public func tensor(_ name: String, threads: Int = Runtime.defaultThreads) throws -> Tensor {
        try Tensor(shape: info(name).shape, scalars: dequantize(name, threads: threads))
    }

    private func check(_ rows: Range<Int>, of t: GGUFTensorInfo) throws {
        guard rows.lowerBound >= 0, rows.upperBound <= t.rows else {
            throw QLoraError.invalidArgument("rows \(rows) of '\(t.name)' in \(path), which has \(t.rows) rows")
        }
    }
}
