import CQLoRAKernels

/// Softmax over the last dimension, numerically stable: exp(x - max(x)) / Σ exp(x - max(x)) per
/// row, so large logits never overflow. Any rank (attention scores are [batch, heads, seq, seq]).
struct SoftmaxOp: OpDefinition {
    var name: String { "softmax" }
    /// Each element is read (for the row maximum) before the row is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let x = try site.f32(0, "input")
        guard !x.isEmpty else { throw site.invalid("input must have at least one dimension") }
        return ValueType(shape: x, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let width = input.node.type.shape.last!
        // max, subtract, exp, sum, scale: about five operations per element.
        return input.elementwise(SoftmaxKernel(rows: input.count / width, width: width), flopsPerElement: 5)
    }

    static let graphFile = ("softmax", GraphFileSpelling(arity: 1, shapeRule: .sameAsFirst) { _ in Op(SoftmaxOp()) })
}

struct SoftmaxKernel: StepKernel {
    var rows: Int, width: Int
    var name: String { "softmax" }
    func workSplit(threads: Int) -> String {
        rows * width > 32768 ? "\(rows) rows over \(threads) \(threadWord(threads))" : "\(rows) rows, 1 thread"
    }
    func run(_ io: KernelIO) { cq_softmax(io.f32(0), io.out, Int64(rows), Int64(width), io.threads) }
}

extension Graph {
    /// Softmax over the last dimension of `x`.
    public func softmax(_ x: Value, label: String = "") throws -> Value { try record(Op(SoftmaxOp()), [x], label) }
}
