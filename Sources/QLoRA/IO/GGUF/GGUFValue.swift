/// A GGUF metadata value. Arrays keep their elements in typed Swift arrays (a million-entry
/// UINT8 array is a million bytes, not a million enum values).
public indirect enum GGUFValue: Equatable, Sendable, CustomStringConvertible {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFArray)

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// The type as the reference manifest writes it: "UINT32", "STRING", "ARRAY[STRING]".
    public var typeName: String {
        if case let .array(a) = self { return "ARRAY[\(a.elementType.name)]" }
        return type.name
    }

    /// Any integer type as an Int (nil when it does not fit or the value is not an integer).
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        default: return nil
        }
    }

    /// FLOAT32 or FLOAT64 (an f64 rounded to nearest).
    public var floatValue: Float? {
        switch self {
        case let .float32(v): return v
        case let .float64(v): return Float(v)
        default: return nil
        }
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: GGUFArray? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var description: String {
        switch self {
        case let .uint8(v): return "\(v)"
        case let .int8(v): return "\(v)"
        case let .uint16(v): return "\(v)"
        case let .int16(v): return "\(v)"
        case let .uint32(v): return "\(v)"
        case let .int32(v): return "\(v)"
        case let .uint64(v): return "\(v)"
        case let .int64(v): return "\(v)"
        case let .float32(v): return "\(v)"
        case let .float64(v): return "\(v)"
        case let .bool(v): return "\(v)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return a.description
        }
    }
}

/// The elements of a GGUF array value, all of one type (arrays may nest).
public indirect enum GGUFArray: Equatable, Sendable, CustomStringConvertible {
    case uint8([UInt8]), int8([Int8]), uint16([UInt16]), int16([Int16]), uint32([UInt32]), int32([Int32])
    case uint64([UInt64]), int64([Int64]), float32([Float]), float64([Double]), bool([Bool]), string([String])
    case array([GGUFArray])

    public var elementType: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    public var count: Int {
        switch self {
        case let .uint8(a): return a.count
        case let .int8(a): return a.count
        case let .uint16(a): return a.count
        case let .int16(a): return a.count
        case let .uint32(a): return a.count
        case let .int32(a): return a.count
        case let .uint64(a): return a.count
        case let .int64(a): return a.count
        case let .float32(a): return a.count
        case let .float64(a): return a.count
        case let .bool(a): return a.count
        case let .string(a): return a.count
        case let .array(a): return a.count
        }
    }

    /// Element i as a value.
    public subscript(i: Int) -> GGUFValue {
        switch self {
        case let .uint8(a): return .uint8(a[i])
        case let .int8(a): return .int8(a[i])
        case let .uint16(a): return .uint16(a[i])
        case let .int16(a): return .int16(a[i])
        case let .uint32(a): return .uint32(a[i])
        case let .int32(a): return .int32(a[i])
        case let .uint64(a): return .uint64(a[i])
        case let .int64(a): return .int64(a[i])
        case let .float32(a): return .float32(a[i])
        case let .float64(a): return .float64(a[i])
        case let .bool(a): return .bool(a[i])
        case let .string(a): return .string(a[i])
        case let .array(a): return .array(a[i])
        }
    }

    public var description: String {
        let n = count
        let shown = (0..<min(n, 8)).map { self[$0].description }.joined(separator: ", ")
        return "[\(shown)\(n > 8 ? ", … (\(n) elements)" : "")]"
    }
}
