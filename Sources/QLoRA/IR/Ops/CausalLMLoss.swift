/// transformers' causal-LM loss: the logits at position t predict the label at t + 1. Labels
/// [..., seq] int32 are shifted left by one within each sequence and the last position gets -100
/// (ignored), then `cross_entropy` (mean over the counted positions, -100 ignored) does the rest —
/// exactly transformers' `ForCausalLMLoss` (pad labels with -100, drop the first).
struct ShiftLabelsOp: OpDefinition {
    var name: String { "shift_labels" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        guard operands[0].element == .int32, !operands[0].shape.isEmpty else { throw site.invalid("labels must be int32 [..., seq], got \(operands[0])") }
        return operands[0]
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let shape = input.node.type.shape
        return LoweredStep(kernel: ShiftLabelsKernel(rows: input.count / shape.last!, seq: shape.last!), flops: 0, bytesMoved: 8 * input.count)
    }

    /// Labels are integers: nothing flows back.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] { [nil] }
}

struct ShiftLabelsKernel: StepKernel {
    var rows: Int, seq: Int
    var name: String { "shift_labels" }
    func workSplit(threads: Int) -> String { "\(rows) sequences, 1 thread" }
    func run(_ io: KernelIO) {
        let src = io.int32(0), dst = io.output.assumingMemoryBound(to: Int32.self)
        for r in 0..<rows {
            for t in 0..<seq - 1 { dst[r * seq + t] = src[r * seq + t + 1] }
            dst[r * seq + seq - 1] = -100
        }
    }
}

extension Graph {
    /// transformers' causal-LM loss: logits [..., seq, vocab] at position t against the int32
    /// label at t + 1 (labels [..., seq], usually the input ids; -100 ignored), mean over the
    /// counted positions; one value, shape [1].
    public func causalLMLoss(_ logits: Value, labels: Value, label: String = "") throws -> Value {
        let shifted = try record(Op(ShiftLabelsOp()), [labels], label.isEmpty ? "" : "\(label).labels")
        return try crossEntropy(logits, labels: shifted, label: label)
    }
}
