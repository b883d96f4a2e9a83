import CQLoRAKernels

/// Mean-squared error, as torch's `mse_loss` (reduction "mean"): mean((y − target)²) over every
/// element, one value [1]. Its gradient with respect to y is (2/n)·(y − target).
struct MSELossOp: OpDefinition {
    var name: String { "mse_loss" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let y = try site.f32(0, "prediction"), t = try site.f32(1, "target")
        guard site.same(y, t) else { throw site.mismatch("target", expected: y, actual: t) }
        return ValueType(shape: [1], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.operands[0].type.count
        return LoweredStep(kernel: MSELossKernel(count: n), flops: 3 * n, bytesMoved: 8 * n + 4)
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let y = node.operands[0], t = node.operands[1]
        let dy = try d.emit(Op(MSEGradOp()), [y, t, cotangent], label: "grad.\(node.label)")
        let dt = d.wants(node, 1) ? try d.emit(.scale(-1), [dy], label: "grad.\(node.label).target") : nil
        return [d.wants(node, 0) ? dy : nil, dt]
    }
}

struct MSELossKernel: StepKernel {
    var count: Int
    var name: String { "mse_loss" }
    func workSplit(threads: Int) -> String { "\(count) elements, 1 thread (one sum in order)" }
    func run(_ io: KernelIO) { io.out[0] = cq_mse(io.f32(0), io.f32(1), Int64(count)) }
}

/// (2/n)·(y − target)·g for the loss's cotangent g [1].
struct MSEGradOp: OpDefinition {
    var name: String { "mse_loss_grad" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(3)
        let y = try site.f32(0, "prediction"), t = try site.f32(1, "target"), g = try site.f32(2, "cotangent")
        guard site.same(y, t), g.reduce(1, *) == 1 else { throw site.mismatch("target", expected: y, actual: t) }
        return ValueType(shape: y, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? { input.elementwise(MSEGradKernel(count: input.count), flopsPerElement: 2) }
}

struct MSEGradKernel: StepKernel {
    var count: Int
    var name: String { "mse_loss_grad" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) { cq_mse_grad(io.f32(0), io.f32(1), io.f32(2), io.out, Int64(count), io.threads) }
}

extension Graph {
    /// mean((prediction − target)²) over every element: one value, shape [1].
    public func mseLoss(_ prediction: Value, target: Value, label: String = "") throws -> Value {
        try record(Op(MSELossOp()), [prediction, target], label)
    }
}
