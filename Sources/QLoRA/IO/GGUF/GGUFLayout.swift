import Foundation

/// The parsed front of a GGUF file (llama.cpp's format, versions 2 and 3, little-endian):
///
///     "GGUF"  u32 version  u64 tensor_count  u64 kv_count
///     kv_count × (string key, u32 value type, value)
///     tensor_count × (string name, u32 n_dims, n_dims × u64 ne, u32 ggml type, u64 offset)
///     padding to general.alignment (default 32), then the data section
///
/// (a string is a u64 byte length and that many bytes of UTF-8). Parsing checks every length
/// and count against the bytes left, every type tag, the alignment, and that the tensors lie
/// inside the data section, aligned, back to back without overlapping. Each failure is a
/// `QLoraError` naming the file, the field (header field, `kv[i] 'key'`, `tensor[i] 'name'`)
/// and the byte offset.
struct GGUFLayout {
    static let magic: [UInt8] = Array("GGUF".utf8)
    static let defaultAlignment = 32
    /// GGML_MAX_DIMS.
    static let maxDims = 4
    /// The fewest bytes a KV pair takes (empty key, u32 type, a 1-byte value).
    static let minKVBytes = 8 + 4 + 1
    /// The fewest bytes a tensor info takes (empty name, n_dims, one ne, type, offset).
    static let minTensorInfoBytes = 8 + 4 + 8 + 4 + 8

    var version: UInt32 = 0
    var metadata: [GGUFKeyValue] = []
    var tensors: [GGUFTensorInfo] = []
    var alignment = GGUFLayout.defaultAlignment
    /// Absolute offset of the data section.
    var dataOffset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) throws {
        var c = GGUFCursor(bytes, path: path)
        func bad(_ field: String, _ reason: String) -> QLoraError { c.error(field, reason) }

        // ---- header
        guard bytes.count >= 4 else {
            throw QLoraError.malformedFile(file: path, field: "header.magic",
                                           reason: "file is \(bytes.count) bytes, too short for the 4-byte magic 'GGUF' (truncated file?)")
        }
        let head = Array(bytes.prefix(4))
        guard head == GGUFLayout.magic else {
            let hex = head.map { String(format: "%02x", $0) }.joined(separator: " ")
            var what = "it starts with the bytes \(hex), not 'GGUF' (47 47 55 46)"
            if head.first == UInt8(ascii: "{") { what += "; it looks like JSON" }
            if bytes.count >= 9, bytes[8] == UInt8(ascii: "{") { what += "; it looks like a safetensors file" }
            throw QLoraError.wrongFileType(file: path, expected: "GGUF", reason: what)
        }
        c = GGUFCursor(bytes, path: path, offset: 4)
        let version = try c.u32("header.version")
        if version & 0xFFFF == 0, (2...3).contains(version.byteSwapped) {
            throw QLoraError.unsupported("\(path): big-endian GGUF (version \(version.byteSwapped), byte-swapped); only little-endian files are read")
        }
        if version == 1 {
            throw QLoraError.unsupported("\(path): GGUF version 1 (32-bit counts, before August 2023); versions 2 and 3 are read")
        }
        guard version == 2 || version == 3 else {
            throw bad("header.version", "version \(version) is not 2 or 3")
        }
        self.version = version
        try c.need(16, "header.tensor_count")
        let tensorCountOffset = c.offset
        let rawTensorCount = try c.u64("header.tensor_count")
        let kvCount = try c.count("header.kv_count", minimumSize: GGUFLayout.minKVBytes, what: "key-value pairs")

        // ---- metadata
        var seen = [String: Int]()
        metadata.reserveCapacity(kvCount)
        for i in 0..<kvCount {
            let at = c.offset
            let key = try c.string("kv[\(i)] key")
            let field = "kv[\(i)] '\(key)'"
            guard !key.isEmpty else { throw bad(field, "empty key at offset \(at)") }
            if let first = seen[key] {
                throw bad(field, "duplicate key (also kv[\(first)]) at offset \(at)")
            }
            seen[key] = i
            let type = try c.valueType(field + " type")
            metadata.append(GGUFKeyValue(key: key, value: try c.value(of: type, field)))
        }
        if let i = seen["general.alignment"] {
            let field = "kv[\(i)] 'general.alignment'"
            guard case let .uint32(a) = metadata[i].value else {
                throw bad(field, "must be a UINT32, got \(metadata[i].value.typeName)")
            }
            guard a != 0, a & (a - 1) == 0 else { throw bad(field, "\(a) is not a power of two") }
            alignment = Int(a)
        }

        // ---- tensor infos
        guard rawTensorCount <= UInt64(c.remaining / GGUFLayout.minTensorInfoBytes) else {
            throw bad("header.tensor_count", "\(rawTensorCount) tensors (at offset \(tensorCountOffset)) cannot fit in the \(c.remaining) bytes left after the metadata (each tensor info takes at least \(GGUFLayout.minTensorInfoBytes))")
        }
        let tensorCount = Int(rawTensorCount)
        var names = [String: Int]()
        var infos = [(info: GGUFTensorInfo, at: Int)]()
        infos.reserveCapacity(tensorCount)
        for i in 0..<tensorCount {
            let at = c.offset
            let name = try c.string("tensor[\(i)] name")
            let field = "tensor[\(i)] '\(name)'"
            if let first = names[name] { throw bad(field, "duplicate tensor name (also tensor[\(first)]) at offset \(at)") }
            names[name] = i
            let dimsAt = c.offset
            let nDims = try c.u32(field + " n_dims")
            guard (1...UInt32(GGUFLayout.maxDims)).contains(nDims) else {
                throw bad(field + " n_dims", "\(nDims) dimensions at offset \(dimsAt); ggml tensors have 1 to \(GGUFLayout.maxDims)")
            }
            let rawNe = try c.array(UInt64.self, count: Int(nDims), field + " ne")
            let typeAt = c.offset
            let rawType = try c.u32(field + " type")
            guard let type = GGMLType(rawValue: rawType) else {
                let removed = GGMLType.removedName(rawType).map { " (\($0), removed from ggml)" } ?? ""
                throw bad(field + " type", "unknown ggml type \(rawType)\(removed) at offset \(typeAt)")
            }
            let offsetAt = c.offset
            let rawOffset = try c.u64(field + " offset")
            var elements = 1
            var ne = [Int]()
            for (d, n) in rawNe.enumerated() {
                guard n <= UInt64(Int.max) else { throw bad(field + " ne", "ne[\(d)] = \(n) is too large") }
                let (p, overflow) = elements.multipliedReportingOverflow(by: Int(n))
                guard !overflow else { throw bad(field + " ne", "ne \(rawNe) has more elements than fit in 64 bits") }
                elements = p
                ne.append(Int(n))
            }
            let (blockSize, typeSize) = type.layout
            guard ne[0] % blockSize == 0 else {
                throw bad(field + " ne", "ne[0] = \(ne[0]) columns is not a multiple of the \(type.name) block size \(blockSize)")
            }
            let (bytes, overflow) = (elements / blockSize).multipliedReportingOverflow(by: typeSize)
            guard !overflow else { throw bad(field + " ne", "ne \(rawNe) of \(type.name) is more bytes than fit in 64 bits") }
            guard rawOffset <= UInt64(Int.max) else { throw bad(field + " offset", "\(rawOffset) at offset \(offsetAt) is too large") }
            let info = GGUFTensorInfo(name: name, type: type, ne: ne, offset: Int(rawOffset), byteCount: bytes, elementCount: elements)
            infos.append((info, offsetAt))
        }

        // ---- data section
        let infosEnd = c.offset
        let (padded, overflow) = infosEnd.addingReportingOverflow((alignment - infosEnd % alignment) % alignment)
        dataOffset = overflow ? Int.max : padded
        let dataLength = bytes.count - dataOffset
        if tensorCount > 0, dataLength < 0 {
            throw bad("data section", "starts at offset \(dataOffset) (tensor infos end at \(infosEnd), padded to \(alignment)), but the file ends at \(bytes.count) (truncated file?)")
        }
        for (i, (t, at)) in infos.enumerated() {
            let field = "tensor[\(i)] '\(t.name)' offset"
            guard t.offset % alignment == 0 else {
                throw bad(field, "\(t.offset) (at offset \(at)) is not a multiple of the alignment \(alignment)")
            }
            guard t.offset <= dataLength, t.byteCount <= dataLength - t.offset else {
                throw bad(field, "bytes \(t.offset)..<\(t.offset &+ t.byteCount) of the data section (\(t.byteCount) bytes of \(t.type.name) \(t.ne)) run past its end at \(max(dataLength, 0)) (truncated file?)")
            }
        }
        // Tensors are back to back in offset order, each padded to the alignment.
        let order = infos.indices.sorted { infos[$0].info.offset < infos[$1].info.offset }
        for (a, b) in zip(order, order.dropFirst()) {
            let prev = infos[a].info, next = infos[b].info
            let end = prev.offset + prev.byteCount
            let paddedEnd = end + (alignment - end % alignment) % alignment
            if next.offset < end {
                throw bad("tensor[\(b)] '\(next.name)' offset", "\(next.offset) overlaps tensor[\(a)] '\(prev.name)' (bytes \(prev.offset)..<\(end) of the data section)")
            }
            if next.offset != paddedEnd {
                throw bad("tensor[\(a)] '\(prev.name)' size", "\(prev.byteCount) bytes (\(prev.type.name) \(prev.ne)) disagree with the next tensor's offset \(next.offset): expected \(paddedEnd) (tensors are stored back to back, padded to \(alignment))")
            }
        }
        if let first = order.first, infos[first].info.offset != 0 {
            throw bad("tensor[\(first)] '\(infos[first].info.name)' offset", "the first tensor starts at \(infos[first].info.offset) of the data section, not 0")
        }
        tensors = infos.map(\.info)
    }
}
