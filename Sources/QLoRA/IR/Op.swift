/// The element type of a graph value.
public enum ElementType: String, Sendable, Codable {
    case float32
    /// A 4-bit quantized weight (NF4 or FP4, bitsandbytes layout).
    case quant4
}

/// Attributes of the fused QLoRA linear node the fusion pass creates:
/// y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ + bias, operands [x, weight, A?, B?, bias?].
public struct FusedLinearAttributes: Sendable, Equatable {
    public var scaling: Float
    public var hasLora: Bool
    public var hasBias: Bool
    /// The names of the nodes the fusion replaced, for printers and plan summaries.
    public var fusedOps: [String]
}

/// One operation of the IR. Leaves hold data (inputs, parameters, weights); the rest compute.
public enum Op: Sendable {
    /// A named input fed at run time.
    case input(name: String)
    /// A full-precision tensor owned outside the graph (LoRA A/B, bias, norm weights).
    case parameter(ParameterStorage)
    /// A frozen 4-bit weight [out, in].
    case quantizedWeight(QuantizedWeightStorage)
    /// The f32 copy of a 4-bit weight kept for the plan's lifetime (made by mode lowering).
    case cachedWeight(QuantizedWeightStorage)
    /// 4-bit weight → f32 [out, in].
    case dequantize
    /// x·Wᵀ: x [..., K], W [N, K] → [..., N].
    case matmul
    /// Elementwise sum; the second operand may be a 1-D row broadcast over the last dimension.
    case add
    /// Elementwise product (same shapes).
    case mul
    /// Multiplication by a constant.
    case scale(Float)
    /// The same elements with another shape.
    case reshape([Int])
    case silu
    case gelu
    case relu
    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · weight.
    case rmsNorm(eps: Float)
    /// silu(a) · b, the SwiGLU gate (made by fusion).
    case siluMul
    /// The fused QLoRA linear (made by fusion).
    case fusedLinear(FusedLinearAttributes)

    /// Short lower-case name used by printers and the JSON graph format.
    public var name: String {
        switch self {
        case .input: return "input"
        case .parameter: return "parameter"
        case .quantizedWeight: return "quantized_weight"
        case .cachedWeight: return "cached_weight"
        case .dequantize: return "dequantize"
        case .matmul: return "matmul"
        case .add: return "add"
        case .mul: return "mul"
        case .scale: return "scale"
        case .reshape: return "reshape"
        case .silu: return "silu"
        case .gelu: return "gelu"
        case .relu: return "relu"
        case .rmsNorm: return "rms_norm"
        case .siluMul: return "silu_mul"
        case .fusedLinear: return "fused_qlora_linear"
        }
    }

    var isDequantize: Bool { if case .dequantize = self { return true } else { return false } }

    /// Leaves hold data and are never executed as steps.
    var isLeaf: Bool {
        switch self {
        case .input, .parameter, .quantizedWeight, .cachedWeight: return true
        default: return false
        }
    }
}
