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

/// Cross-entropy as torch's `cross_entropy` (mean reduction, ignore_index -100): logits
/// [..., vocab] f32 and int32 labels [...] → [1], the mean over labelled rows of
/// log Σ exp(logits) − logits[label]. A label outside the vocabulary (other than -100) fails the run.
struct CrossEntropyOp: OpDefinition {
    var name: String { "cross_entropy" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let logits = try site.f32(0, "logits")
        guard operands[1].element == .int32 else { throw site.invalid("labels must be int32, got \(operands[1])") }
        guard !logits.isEmpty, site.same(Array(logits.dropLast()), operands[1].shape) else {
            throw site.mismatch("labels (the logits' shape without the vocabulary)", expected: Array(logits.dropLast()), actual: operands[1].shape)
        }
        return ValueType(shape: [1], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let logits = input.operands[0].type, n = logits.shape.last!
        return LoweredStep(kernel: CrossEntropyKernel(rows: logits.count / n, width: n, gradient: false, label: input.node.label),
                           flops: 4 * logits.count, bytesMoved: 4 * (logits.count + logits.count / n) + 4)
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        [try d.emit(Op(CrossEntropyGradOp()), [node.operands[0], node.operands[1], cotangent], label: "grad.\(node.label)"), nil]
    }
}

/// The logits' gradient of `cross_entropy`: (softmax − onehot(label))·g / labelled rows.
struct CrossEntropyGradOp: OpDefinition {
    var name: String { "cross_entropy_grad" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(3)
        let logits = try site.f32(0, "logits"), g = try site.f32(2, "cotangent")
        guard operands[1].element == .int32, g.reduce(1, *) == 1 else { throw site.invalid("expects int32 labels and a one-value cotangent") }
        return ValueType(shape: logits, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.node.type.shape.last!
        return input.elementwise(CrossEntropyKernel(rows: input.count / n, width: n, gradient: true, label: input.node.label), flopsPerElement: 4)
    }
}

struct CrossEntropyKernel: StepKernel {
    var rows: Int, width: Int
    var gradient: Bool
    var label: String
    var name: String { gradient ? "cross_entropy_grad" : "cross_entropy" }
    func workSplit(threads: Int) -> String {
        gradient ? "\(rows) rows over up to \(threads) \(threadWord(threads))"
            : "\(rows) rows over up to \(threads) \(threadWord(threads)), then one sum in order"
    }
    func run(_ io: KernelIO) throws {
        if gradient {
            cq_cross_entropy_grad(io.f32(0), io.int32(1), io.f32(2), io.out, Int64(rows), Int64(width), io.threads)
            return
        }
        let bad = cq_cross_entropy(io.f32(0), io.int32(1), Int64(rows), Int64(width), io.out, io.threads)
        guard bad < 0 else {
            let what = label.isEmpty ? "cross_entropy" : "cross_entropy '\(label)'"
            throw QLoraError.invalidArgument("\(what): label \(io.int32(1)[Int(bad)]) at row \(bad) is outside the \(width) classes")
        }
    }
}

extension Graph {
    /// torch's `cross_entropy` (mean over rows, labels -100 ignored): logits [..., vocab], int32
    /// labels [...]; one value, shape [1].
    public func crossEntropy(_ logits: Value, labels: Value, label: String = "") throws -> Value {
        try record(Op(CrossEntropyOp()), [logits, labels], label)
    }
}
