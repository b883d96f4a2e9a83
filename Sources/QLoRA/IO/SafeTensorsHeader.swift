/// One tensor entry of a safetensors header.
public struct SafeTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range inside the data region (data_offsets).
    public let dataOffsets: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { dataOffsets.count }
}

/// Parses and validates a safetensors header: every entry well-formed, sizes consistent, and the
/// entries tiling the data region exactly (no overlap, no gap, nothing after the last tensor).
struct SafeTensorsHeader {
    /// Upper bound on the JSON header (the Python/Rust library uses 100 MB too).
    static let maxHeaderBytes = 100_000_000

    var metadata: [String: String] = [:]
    var entries: [String: SafeTensorInfo] = [:]

    init(json bytes: [UInt8], dataLength: Int, file: String) throws {
        func bad(_ field: String, _ reason: String) -> QLoraError {
            .malformedFile(file: file, field: field, reason: reason)
        }
        let root = try JSONValue.parse(bytes, file: file, field: "header")
        guard case let .object(members) = root else {
            throw bad("header", "must be a JSON object, got \(root.kind)")
        }
        for (name, value) in members {
            if name == "__metadata__" {
                guard case let .object(pairs) = value else { throw bad("__metadata__", "must be an object, got \(value.kind)") }
                for (k, v) in pairs {
                    guard case let .string(s) = v else { throw bad("__metadata__.\(k)", "must be a string, got \(v.kind)") }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try SafeTensorsHeader.entry(name, value, dataLength: dataLength, bad: bad)
        }
        try checkTiling(dataLength: dataLength, bad: bad)
    }

    private static func entry(_ name: String, _ value: JSONValue, dataLength: Int,
                              bad: (String, String) -> QLoraError) throws -> SafeTensorInfo {
        guard case let .object(fields) = value else { throw bad(name, "entry must be an object, got \(value.kind)") }
        for (key, _) in fields where !["dtype", "shape", "data_offsets"].contains(key) {
            throw bad("\(name).\(key)", "unknown field")
        }
        guard let dtypeValue = value["dtype"] else { throw bad("\(name).dtype", "missing") }
        guard case let .string(dtypeName) = dtypeValue else { throw bad("\(name).dtype", "must be a string") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            let known = SafeTensorsDType.allCases.map(\.rawValue).joined(separator: ", ")
            throw bad("\(name).dtype", "unknown dtype \"\(dtypeName)\" (supported: \(known))")
        }
        guard let shapeValue = value["shape"] else { throw bad("\(name).shape", "missing") }
        let shape = try naturals(shapeValue, field: "\(name).shape", bad: bad)
        guard let offsetsValue = value["data_offsets"] else { throw bad("\(name).data_offsets", "missing") }
        let offsets = try naturals(offsetsValue, field: "\(name).data_offsets", bad: bad)
        guard offsets.count == 2 else { throw bad("\(name).data_offsets", "must be [begin, end], got \(offsets)") }
        guard offsets[0] <= offsets[1] else { throw bad("\(name).data_offsets", "begin \(offsets[0]) > end \(offsets[1])") }
        guard offsets[1] <= dataLength else {
            throw bad("\(name).data_offsets", "[\(offsets[0]), \(offsets[1])] is beyond the data region of \(dataLength) bytes")
        }
        var bytes = dtype.size
        for d in shape {
            let (p, overflow) = bytes.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("\(name).shape", "\(shape) is too large") }
            bytes = p
        }
        guard bytes == offsets[1] - offsets[0] else {
            throw bad("\(name).data_offsets", "holds \(offsets[1] - offsets[0]) bytes but shape \(shape) of \(dtypeName) needs \(bytes)")
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: offsets[0]..<offsets[1])
    }

    /// An array of non-negative integers.
    private static func naturals(_ value: JSONValue, field: String, bad: (String, String) -> QLoraError) throws -> [Int] {
        guard case let .array(items) = value else { throw bad(field, "must be an array, got \(value.kind)") }
        return try items.map {
            if case let .int(i) = $0, i >= 0 { return i }
            let got: String
            if case let .int(i) = $0 { got = String(i) } else if case let .number(_, text) = $0 { got = text } else { got = $0.kind }
            throw bad(field, "must hold non-negative integers, got \(got)")
        }
    }

    private func checkTiling(dataLength: Int, bad: (String, String) -> QLoraError) throws {
        let sorted = entries.values.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name)
        }
        var end = 0
        var previous = "start of the data region"
        for info in sorted {
            let r = info.dataOffsets
            if r.lowerBound < end {
                throw bad("\(info.name).data_offsets", "[\(r.lowerBound), \(r.upperBound)] overlaps \(previous) (ends at \(end))")
            }
            if r.lowerBound > end {
                throw bad("\(info.name).data_offsets", "leaves a gap of \(r.lowerBound - end) bytes after \(previous)")
            }
            end = r.upperBound
            previous = "'\(info.name)'"
        }
        guard end == dataLength else {
            throw bad("data region", "\(dataLength - end) bytes after the last tensor are not covered by any entry")
        }
    }
}
