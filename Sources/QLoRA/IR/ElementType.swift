/// The element type of a graph value.
public enum ElementType: String, Sendable, Codable {
    case float32
    /// Brain float: f32's exponent with a 7-bit mantissa (weights and activations in bf16 models).
    case bfloat16
    /// 32-bit integers: token ids and labels.
    case int32
    /// A 4-bit quantized weight (NF4 or FP4, bitsandbytes layout).
    case quant4

    /// The short name printers use, as in "f32[4x64]".
    var abbreviation: String {
        switch self {
        case .float32: return "f32"
        case .bfloat16: return "bf16"
        case .int32: return "i32"
        case .quant4: return "q4"
        }
    }

    /// Bytes per element in a buffer (4-bit weights live in their storage, never in a buffer).
    var byteWidth: Int {
        switch self {
        case .float32, .int32: return 4
        case .bfloat16: return 2
        case .quant4: return 1
        }
    }
}
