/// The element type of a graph value.
public enum ElementType: String, Sendable, Codable {
    case float32
    /// A 4-bit quantized weight (NF4 or FP4, bitsandbytes layout).
    case quant4
}
