/// Reads metadata values (scalars, strings, arrays of any of them, nested arrays) from a
/// `GGUFCursor`. An array's count is checked against the bytes left before its elements are
/// read, and nesting is limited, so no value of a hostile file allocates more than the file
/// could hold or recurses without bound.
extension GGUFCursor {
    /// Deepest array nesting accepted (gguf-py writes 2 at most).
    static let maxArrayDepth = 8

    /// A value type tag.
    mutating func valueType(_ field: String) throws -> GGUFValueType {
        let at = offset
        let raw = try u32(field)
        guard let t = GGUFValueType(rawValue: raw) else {
            throw error(field, "unknown value type \(raw) at offset \(at) (known: 0...12)")
        }
        return t
    }

    mutating func value(of type: GGUFValueType, _ field: String, depth: Int = 0) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try u8(field))
        case .int8: return .int8(Int8(bitPattern: try u8(field)))
        case .uint16: return .uint16(try load(UInt16.self, field))
        case .int16: return .int16(try load(Int16.self, field))
        case .uint32: return .uint32(try u32(field))
        case .int32: return .int32(try load(Int32.self, field))
        case .uint64: return .uint64(try u64(field))
        case .int64: return .int64(try load(Int64.self, field))
        case .float32: return .float32(Float(bitPattern: try u32(field)))
        case .float64: return .float64(Double(bitPattern: try u64(field)))
        case .bool: return .bool(try bool(field))
        case .string: return .string(try string(field))
        case .array: return .array(try array(field, depth: depth))
        }
    }

    mutating func bool(_ field: String, index: Int? = nil) throws -> Bool {
        let at = offset
        let b = try u8(field)
        guard b <= 1 else {
            throw error(index.map { "\(field)[\($0)]" } ?? field, "BOOL byte \(b) at offset \(at) is neither 0 nor 1")
        }
        return b == 1
    }

    /// An array value: u32 element type, u64 count, the elements back to back.
    mutating func array(_ field: String, depth: Int) throws -> GGUFArray {
        guard depth < GGUFCursor.maxArrayDepth else {
            throw error(field, "arrays nested more than \(GGUFCursor.maxArrayDepth) deep (at offset \(offset))")
        }
        let type = try valueType(field + " element type")
        let n = try count(field + " count", minimumSize: type.minimumSize, what: "\(type.name) elements")
        switch type {
        case .uint8: return .uint8(try array(UInt8.self, count: n, field))
        case .int8: return .int8(try array(Int8.self, count: n, field))
        case .uint16: return .uint16(try array(UInt16.self, count: n, field))
        case .int16: return .int16(try array(Int16.self, count: n, field))
        case .uint32: return .uint32(try array(UInt32.self, count: n, field))
        case .int32: return .int32(try array(Int32.self, count: n, field))
        case .uint64: return .uint64(try array(UInt64.self, count: n, field))
        case .int64: return .int64(try array(Int64.self, count: n, field))
        case .float32: return .float32(try array(UInt32.self, count: n, field).map { Float(bitPattern: $0) })
        case .float64: return .float64(try array(UInt64.self, count: n, field).map { Double(bitPattern: $0) })
        case .bool:
            var out = [Bool]()
            out.reserveCapacity(n)
            for i in 0..<n { out.append(try bool(field, index: i)) }
            return .bool(out)
        case .string:
            var out = [String]()
            out.reserveCapacity(n)
            for i in 0..<n { out.append(try string(field, index: i)) }
            return .string(out)
        case .array:
            var out = [GGUFArray]()
            out.reserveCapacity(n)
            for i in 0..<n { out.append(try array("\(field)[\(i)]", depth: depth + 1)) }
            return .array(out)
        }
    }
}
