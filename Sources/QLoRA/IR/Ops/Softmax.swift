import CQLoRAKernels

/// Softmax over the last dimension, numerically stable: exp(x - max(x)) / Σ exp(x - max(x)) per
/// row, so large logits never overflow. Any rank (attention scores are [batch, heads, seq, seq]).
/// With `logSumExp`, a second result holds each row's log Σ exp(x) (shape x without its last
/// dimension), which cross-entropy and the backward pass reuse.
struct SoftmaxOp: OpDefinition {
    var logSumExp = false
    var name: String { "softmax" }
    var jsonAttributes: [(key: String, value: JSONValue)] { logSumExp ? [("log_sum_exp", .bool(true))] : [] }
    var bracketAttributes: String { logSumExp ? "[log-sum-exp]" : "" }
    /// Each element is read (for the row maximum) before the row is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let x = try site.f32(0, "input")
        guard !x.isEmpty else { throw site.invalid("input must have at least one dimension") }
        return ValueType(shape: x, element: .float32)
    }

    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        logSumExp ? [ValueType(shape: Array(operands[0].shape.dropLast()), element: .float32)] : []
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let width = input.node.type.shape.last!
        // max, subtract, exp, sum, scale: about five operations per element.
        var step = input.elementwise(SoftmaxKernel(rows: input.count / width, width: width, logSumExp: logSumExp), flopsPerElement: 5)
        if logSumExp { step.bytesMoved += 4 * input.count / width }
        return step
    }

    static let graphFile = ("softmax", GraphFileSpelling(arity: 1) { _ in Op(SoftmaxOp()) })
}

struct SoftmaxKernel: StepKernel {
    var rows: Int, width: Int
    var logSumExp = false
    var name: String { "softmax" }
    func workSplit(threads: Int) -> String {
        rows * width > 32768 ? "\(rows) rows over \(threads) \(threadWord(threads))" : "\(rows) rows, 1 thread"
    }
    func run(_ io: KernelIO) {
        if logSumExp { cq_softmax_lse(io.f32(0), io.out, io.result(1), Int64(rows), Int64(width), io.threads) }
        else { cq_softmax(io.f32(0), io.out, Int64(rows), Int64(width), io.threads) }
    }
}

extension Graph {
    /// Softmax over the last dimension of `x`.
    public func softmax(_ x: Value, label: String = "") throws -> Value { try record(Op(SoftmaxOp()), [x], label) }

    /// Softmax over the last dimension and each row's log Σ exp(x): one step, two results.
    public func softmaxWithLogSumExp(_ x: Value, label: String = "") throws -> (probabilities: Value, logSumExp: Value) {
        let results = try recordResults(Op(SoftmaxOp(logSumExp: true)), [x], label)
        return (results[0], results[1])
    }
}

extension SoftmaxOp {
    /// dx = y·(g − Σ g·y) per row, from the node's own output y; a cotangent reaching the
    /// log-sum-exp result (∂lse/∂x = y) adds y·g_lse.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let lse = d.resultCotangent(1).map { [$0] } ?? []
        return [try d.emit(Op(SoftmaxGradOp()), [node.id, cotangent] + lse, label: "grad.\(node.label)")]
    }
}
