/// The element types this package reads from and writes to safetensors files.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i8 = "I8", u8 = "U8"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .i8, .u8: return 1
        }
    }

    /// F64, F32, F16 and BF16: the types `SafeTensorsFile.tensor` converts to Float32.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: return true
        default: return false
        }
    }

    /// The torch dtype name (`str(torch.float16)` without "torch."), as bitsandbytes records it.
    public var torchName: String {
        switch self {
        case .f64: return "float64"
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .i64: return "int64"
        case .i32: return "int32"
        case .i8: return "int8"
        case .u8: return "uint8"
        }
    }
}

/// Exact IEEE binary16 → binary32 conversion, including subnormals, ±inf and NaN (the payload is
/// kept in the top mantissa bits).
@inline(__always)
public func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    var mantissa = UInt32(h & 0x3FF)
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | mantissa << 13) }
    if exponent != 0 { return Float(bitPattern: sign | (exponent + 112) << 23 | mantissa << 13) }
    if mantissa == 0 { return Float(bitPattern: sign) }
    // Subnormal half: normalize. Its value is mantissa · 2^-24, always a normal float.
    var e: UInt32 = 113
    while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
    return Float(bitPattern: sign | e << 23 | (mantissa & 0x3FF) << 13)
}

/// bfloat16 is the top half of a binary32, so widening is exact for every bit pattern.
@inline(__always)
public func floatFromBFloat16Bits(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}
