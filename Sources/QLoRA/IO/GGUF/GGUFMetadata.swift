/// One metadata key and its value.
public struct GGUFKeyValue: Equatable, Sendable {
    public let key: String
    public let value: GGUFValue
}

/// The key-value metadata of a GGUF file, in file order, with typed look-ups whose errors name
/// the file and the key.
public struct GGUFMetadata: Sendable {
    public let entries: [GGUFKeyValue]
    private let index: [String: Int]
    /// The file named in errors.
    public let path: String

    init(entries: [GGUFKeyValue], path: String) {
        self.entries = entries
        self.path = path
        var index = [String: Int]()
        for (i, e) in entries.enumerated() { index[e.key] = i }
        self.index = index
    }

    public var keys: [String] { entries.map(\.key) }
    public var count: Int { entries.count }
    public subscript(key: String) -> GGUFValue? { index[key].map { entries[$0].value } }

    private func require(_ key: String) throws -> GGUFValue {
        guard let v = self[key] else {
            throw QLoraError.malformedFile(file: path, field: "metadata '\(key)'", reason: "missing")
        }
        return v
    }

    private func wrongType(_ key: String, _ v: GGUFValue, _ expected: String) -> QLoraError {
        .malformedFile(file: path, field: "metadata '\(key)'", reason: "expected \(expected), got \(v.typeName) \(v)")
    }

    /// An integer of any GGUF integer type.
    public func int(_ key: String) throws -> Int {
        let v = try require(key)
        guard let i = v.intValue else {
            if case .uint64 = v {
                throw QLoraError.malformedFile(file: path, field: "metadata '\(key)'", reason: "UINT64 \(v) does not fit in an Int")
            }
            throw wrongType(key, v, "an integer")
        }
        return i
    }

    /// FLOAT32 (or FLOAT64, rounded to nearest).
    public func float(_ key: String) throws -> Float {
        let v = try require(key)
        guard let f = v.floatValue else { throw wrongType(key, v, "a float") }
        return f
    }

    public func string(_ key: String) throws -> String {
        let v = try require(key)
        guard let s = v.stringValue else { throw wrongType(key, v, "a STRING") }
        return s
    }

    public func bool(_ key: String) throws -> Bool {
        let v = try require(key)
        guard let b = v.boolValue else { throw wrongType(key, v, "a BOOL") }
        return b
    }

    /// An ARRAY[STRING] (token lists, merges).
    public func strings(_ key: String) throws -> [String] {
        let v = try require(key)
        guard case let .array(.string(a)) = v else { throw wrongType(key, v, "an ARRAY[STRING]") }
        return a
    }
}
