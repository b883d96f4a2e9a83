/// Where a step's operand or result lives at run time.
enum BufferRef: Sendable, Equatable {
    /// Byte offset into the execution context's arena, and the element count.
    case arena(offset: Int, count: Int)
    /// A parameter the plan reads through its storage (index into `ExecutablePlan.parameters`).
    case parameter(Int)
    /// A 4-bit weight (index into `ExecutablePlan.weights`).
    case weight(Int)
    /// A persistent f32 copy of a 4-bit weight (index into `ExecutablePlan.cachedWeights`).
    case cached(Int)
    /// The caller's input tensor, read in place (index into the graph's inputs).
    case input(Int)
    /// The array returned as an output, written in place (index into the graph's outputs).
    case output(Int)
}

/// What a step runs, with the sizes the kernel needs.
enum Kernel: Sendable, Equatable {
    /// On-the-fly fused dequant-GEMM + LoRA + bias: [x, weight, A?, B?, bias?]; `bf16` asks for
    /// bf16 compute where the CPU and shape allow it.
    case fusedLinear(m: Int, n: Int, k: Int, rank: Int, scaling: Float, hasBias: Bool, bf16: Bool)
    /// Cached f32 weight through OpenBLAS + LoRA + bias: [x, cached, A?, B?, bias?].
    case denseLinear(m: Int, n: Int, k: Int, rank: Int, scaling: Float, hasBias: Bool)
    case dequantize
    case matmul(m: Int, n: Int, k: Int)
    case add(count: Int)
    case addRow(rows: Int, width: Int)
    case mul(count: Int)
    case scale(Float, count: Int)
    case silu(count: Int)
    case gelu(count: Int)
    case relu(count: Int)
    case siluMul(count: Int)
    case rmsNorm(eps: Float, rows: Int, width: Int)

    var name: String {
        switch self {
        case let .fusedLinear(_, _, _, _, _, _, bf16): return bf16 ? "fused_qlora_linear(on-the-fly, bf16)" : "fused_qlora_linear(on-the-fly)"
        case .denseLinear: return "dense_qlora_linear(cached)"
        case .dequantize: return "dequantize"
        case .matmul: return "matmul(sgemm)"
        case .add: return "add"
        case .addRow: return "add_row"
        case .mul: return "mul"
        case .scale: return "scale"
        case .silu: return "silu"
        case .gelu: return "gelu"
        case .relu: return "relu"
        case .siluMul: return "silu_mul"
        case .rmsNorm: return "rms_norm"
        }
    }
}

/// One step of a plan: a kernel, its operand and result buffers, and its cost.
public struct Step: Sendable {
    let kernel: Kernel
    let operands: [BufferRef]
    let output: BufferRef
    /// The IR node this step computes.
    public let node: Int
    public let label: String
    /// Floating-point operations (multiply-add = 2).
    public let flops: Int
    /// Bytes read and written (weights, activations, results).
    public let bytesMoved: Int
    /// Kernel scratch this step needs (shared scratch region).
    public let scratchBytes: Int
    /// IR ops this step replaces when it is a fused kernel.
    public let fusedOps: [String]
    /// How the kernel divides the work among threads (always over independent outputs, so the
    /// result does not depend on the thread count).
    public let workSplit: String

    public var kernelName: String { kernel.name }
}
