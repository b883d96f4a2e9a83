import CQLoRAKernels

/// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · weight.
struct RMSNormOp: OpDefinition {
    var eps: Float
    var name: String { "rms_norm" }
    /// Each row's sum of squares is taken before the row is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("eps", IRDump.number(eps))] }
    var bracketAttributes: String { "[eps=\(eps)]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let x = try site.f32(0, "input"), w = try site.f32(1, "weight")
        guard let last = x.last, w.count == 1, site.same(w[0], last) else { throw site.mismatch("weight", expected: [x.last ?? 0], actual: w) }
        return ValueType(shape: x, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let width = input.node.type.shape.last!
        return input.elementwise(RMSNormKernel(eps: eps, rows: input.count / width, width: width), flopsPerElement: 4)
    }
}

struct RMSNormKernel: StepKernel {
    var eps: Float, rows: Int, width: Int
    var name: String { "rms_norm" }
    func workSplit(threads: Int) -> String { "\(rows) rows over \(threads) \(threadWord(threads))" }
    func run(_ io: KernelIO) { cq_rmsnorm(io.f32(0), io.f32(1), eps, io.out, Int64(rows), Int64(width), io.threads) }
}

extension Op {
    static func rmsNorm(eps: Float) -> Op { Op(RMSNormOp(eps: eps)) }
}

extension Graph {
    public func rmsNorm(_ x: Value, weight: Value, eps: Float = 1e-6, label: String = "") throws -> Value {
        try record(.rmsNorm(eps: eps), [x, weight], label)
    }
}

extension RMSNormOp {
    /// dx = inv·(g·w) − x·inv³/n·Σ(g·w·x) per row; dw = Σ over rows of g·x·inv.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let x = node.operands[0], w = node.operands[1], label = "grad.\(node.label)"
        let dx = d.wants(node, 0) ? try d.emit(Op(RMSNormGradOp(eps: eps)), [x, w, cotangent], label: label) : nil
        var dw: Int?
        if d.wants(node, 1) {
            let normalized = try d.emit(Op(RMSNormGradOp(eps: eps, normalizedOnly: true)), [x], label: label)
            dw = try d.emit(Op(SumRowsOp()), [try d.emit(.mul, [cotangent, normalized], label: label)], label: "\(label).weight")
        }
        return [dx, dw]
    }
}
