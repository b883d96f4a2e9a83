/// Where a step's operand or result lives at run time.
enum BufferRef: Sendable, Equatable {
    /// Byte offset into the execution context's arena, and the value's size in bytes.
    case arena(offset: Int, bytes: Int)
    /// A parameter the plan reads through its storage (index into `ExecutablePlan.parameters`).
    case parameter(Int)
    /// A 4-bit weight (index into `ExecutablePlan.weights`).
    case weight(Int)
    /// A persistent f32 copy of a 4-bit weight (index into `ExecutablePlan.cachedWeights`).
    case cached(Int)
    /// A persistent, writable buffer (index into `MemoryPlan.states`).
    case state(Int)
    /// The caller's input tensor, read in place (index into the graph's inputs).
    case input(Int)
    /// The array returned as an output, written in place (index into the graph's outputs).
    case output(Int)
}

/// One step of a plan: a kernel, its operand and result buffers, and its cost.
public struct Step: Sendable {
    let kernel: any StepKernel
    let operands: [BufferRef]
    let output: BufferRef
    /// Byte offsets of the node's results in its output buffer ([0] for one result).
    let resultOffsets: [Int]
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
