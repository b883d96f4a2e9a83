import CQLoRAKernels

/// The ops reverse mode adds (the autodiff pass records them through the definitions' `vjp`):
/// matmul variants (dY·W through the 4-bit weight on the fly or dense, dYᵀ·X), row sums,
/// activation / softmax / RMSNorm derivatives, the embedding table's scatter-add, a constant
/// fill, and `assign` (a state overwritten in place: gradients into a `ParameterStore`).

/// dY·W: dY [..., N] and W [N, K] (f32, or the 4-bit weight decoded on the fly) → [..., K].
struct MatmulNNOp: OpDefinition {
    var name: String { "matmul_nn" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let dy = try site.f32(0, "cotangent"), w = operands[1].shape
        guard operands[1].element == .float32 || operands[1].element == .quant4 else { throw site.invalid("weight must be f32 or 4-bit") }
        guard w.count == 2, let last = dy.last, site.same(last, w[0]) else { throw site.mismatch("weight [N, K]", expected: [dy.last ?? 0, w.last ?? 0], actual: w) }
        return ValueType(shape: dy.dropLast() + [w[1]], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), w = input.operands[1].type
        let quantized = w.element == .quant4
        let weightBytes = quantized ? (input.operands[1].op.weightStorage?.memoryBytes ?? 0) : 4 * w.count
        let scratch = cq_gemm_nn_scratch_bytes(Int64(m), Int64(w.shape[0]), Int64(w.shape[1]), quantized ? 1 : 0, Int32(input.threads))
        return LoweredStep(kernel: MatmulNNKernel(m: m, n: w.shape[0], k: w.shape[1], quantized: quantized,
                                                  bf16: input.bf16AgainstFrozenWeight(operand: 1)),
                           flops: 2 * m * w.count, bytesMoved: weightBytes + 4 * m * (w.shape[0] + w.shape[1]),
                           scratchBytes: Int(scratch))
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        // Linear in dY: the transpose is a matmul against the same weight.
        [d.wants(node, 0) ? try d.emit(.matmul, [cotangent, node.operands[1]], label: "grad.\(node.label)") : nil, nil]
    }
}

struct MatmulNNKernel: StepKernel {
    var m: Int, n: Int, k: Int
    var quantized: Bool
    /// bf16 compute (cqlora_bf16.h), f32 where the CPU lacks AVX512-BF16.
    var bf16 = false
    var name: String { (quantized ? "matmul_nn(4-bit on-the-fly)" : "matmul_nn") + (bf16 ? "(bf16)" : "") }
    func workSplit(threads: Int) -> String {
        if bf16 { return bf16WorkSplit(threads: threads) }
        let columns = quantized || k >= 32 ? "\(k) columns" : "\(m) rows"
        return "\(columns) over up to \(threads) \(threadWord(threads)), N in blocks of 256 in order"
    }
    func run(_ io: KernelIO) {
        if bf16, runBF16(io) { return }
        if quantized { cq_gemm_nn_q4(io.f32(0), Int64(m), io.weight(1), io.out, io.scratch, io.threads) }
        else { cq_gemm_nn(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), io.out, io.scratch, io.threads) }
    }
}

/// dYᵀ·X: dY [..., N] and X [..., K] with the same leading dimensions → [N, K] (a weight's gradient).
struct MatmulTNOp: OpDefinition {
    var name: String { "matmul_tn" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let dy = try site.f32(0, "cotangent"), x = try site.f32(1, "input")
        guard !dy.isEmpty, !x.isEmpty, site.same(Array(dy.dropLast()), Array(x.dropLast())) else {
            throw site.mismatch("input's leading dimensions", expected: dy.dropLast() + [x.last ?? 0], actual: x)
        }
        return ValueType(shape: [dy.last!, x.last!], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), n = input.shape(0).last!, k = input.shape(1).last!
        return LoweredStep(kernel: MatmulTNKernel(m: m, n: n, k: k), flops: 2 * m * n * k, bytesMoved: 4 * (m * n + m * k + n * k),
                           scratchBytes: Int(cq_gemm_tn_scratch_bytes(Int64(m), Int64(n), Int64(k), Int32(input.threads))))
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        throw QLoraError.invalidArgument("matmul_tn '\(node.label)': a gradient's gradient is not supported")
    }
}

struct MatmulTNKernel: StepKernel {
    var m: Int, n: Int, k: Int
    var name: String { "matmul_tn" }
    func workSplit(threads: Int) -> String {
        "\(n > k ? "\(n) rows" : "\(k) columns") of the result over up to \(threads) \(threadWord(threads)), M in blocks of 256 in order"
    }
    func run(_ io: KernelIO) { cq_gemm_tn(io.f32(0), io.f32(1), Int64(m), Int64(n), Int64(k), io.out, io.scratch, io.threads) }
}

/// Σ over every dimension but the last: [..., N] → [N] (a broadcast row's gradient).
struct SumRowsOp: OpDefinition {
    var name: String { "sum_rows" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let x = try site.f32(0, "input")
        guard let last = x.last else { throw site.invalid("input must have at least one dimension") }
        return ValueType(shape: [last], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.count
        return LoweredStep(kernel: SumRowsKernel(rows: input.operands[0].type.count / n, width: n), flops: input.operands[0].type.count,
                           bytesMoved: 4 * (input.operands[0].type.count + n))
    }
}

struct SumRowsKernel: StepKernel {
    var rows: Int, width: Int
    var name: String { "sum_rows" }
    func workSplit(threads: Int) -> String { "\(width) columns over up to \(threads) \(threadWord(threads)), rows in order" }
    func run(_ io: KernelIO) { cq_sum_rows(io.f32(0), Int64(rows), Int64(width), io.out, io.threads) }
}

/// dY·f'(x) for an activation f: operands [x, dY].
struct ActivationGradOp: OpDefinition {
    var function: Activation
    var name: String { "\(function.rawValue)_grad" }
    var mayReuseOperand: Int? { 1 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let x = try site.f32(0, "input"), dy = try site.f32(1, "cotangent")
        guard site.same(x, dy) else { throw site.mismatch("cotangent", expected: x, actual: dy) }
        return ValueType(shape: x, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        input.elementwise(ActivationGradKernel(function: function, count: input.count), flopsPerElement: function.flops + 2)
    }
}

struct ActivationGradKernel: StepKernel {
    var function: Activation, count: Int
    var name: String { "\(function.rawValue)_grad" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        let kind: Int32 = function == .silu ? 0 : function == .gelu ? 1 : 2
        cq_activation_grad(kind, io.f32(0), io.f32(1), io.out, Int64(count), io.threads)
    }
}

/// Softmax's input gradient from its output y and dY: y·(dY − Σ dY·y) per row; with a third
/// operand, the cotangent of each row's log-sum-exp [rows], y·(dY − Σ dY·y + dLSE).
struct SoftmaxGradOp: OpDefinition {
    var name: String { "softmax_grad" }
    var mayReuseOperand: Int? { 1 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        guard operands.count == 2 || operands.count == 3 else { throw site.invalid("expects 2 or 3 operands, got \(operands.count)") }
        let y = try site.f32(0, "output"), dy = try site.f32(1, "cotangent")
        guard site.same(y, dy), !y.isEmpty else { throw site.mismatch("cotangent", expected: y, actual: dy) }
        if operands.count == 3 {
            let lse = try site.f32(2, "log-sum-exp cotangent")
            guard site.same(lse, Array(y.dropLast())) else { throw site.mismatch("log-sum-exp cotangent", expected: Array(y.dropLast()), actual: lse) }
        }
        return ValueType(shape: y, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.node.type.shape.last!
        return input.elementwise(SoftmaxGradKernel(rows: input.count / n, width: n, withLogSumExp: input.operands.count == 3), flopsPerElement: 4)
    }
}

struct SoftmaxGradKernel: StepKernel {
    var rows: Int, width: Int
    var withLogSumExp: Bool
    var name: String { "softmax_grad" }
    func workSplit(threads: Int) -> String { "\(rows) rows over up to \(threads) \(threadWord(threads))" }
    func run(_ io: KernelIO) {
        cq_softmax_grad(io.f32(0), io.f32(1), withLogSumExp ? io.f32(2) : nil, io.out, Int64(rows), Int64(width), io.threads)
    }
}

/// RMSNorm's input gradient: operands [x, weight, dY]; or (`normalizedOnly`) x / rms(x), the
/// factor of the weight's gradient, from [x].
struct RMSNormGradOp: OpDefinition {
    var eps: Float
    var normalizedOnly = false
    var name: String { normalizedOnly ? "rms_normalize" : "rms_norm_grad" }
    var bracketAttributes: String { "[eps=\(eps)]" }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("eps", IRDump.number(eps))] }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(normalizedOnly ? 1 : 3)
        let x = try site.f32(0, "input")
        guard !x.isEmpty else { throw site.invalid("input must have at least one dimension") }
        if !normalizedOnly {
            let w = try site.f32(1, "weight"), dy = try site.f32(2, "cotangent")
            guard w.count == 1, site.same(w[0], x.last!) else { throw site.mismatch("weight", expected: [x.last!], actual: w) }
            guard site.same(x, dy) else { throw site.mismatch("cotangent", expected: x, actual: dy) }
        }
        return ValueType(shape: x, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.node.type.shape.last!
        return input.elementwise(RMSNormGradKernel(eps: eps, rows: input.count / n, width: n, normalizedOnly: normalizedOnly), flopsPerElement: 6)
    }
}

struct RMSNormGradKernel: StepKernel {
    var eps: Float, rows: Int, width: Int
    var normalizedOnly: Bool
    var name: String { normalizedOnly ? "rms_normalize" : "rms_norm_grad" }
    func workSplit(threads: Int) -> String { "\(rows) rows over up to \(threads) \(threadWord(threads))" }
    func run(_ io: KernelIO) {
        if normalizedOnly { cq_rmsnorm_hat(io.f32(0), eps, io.out, Int64(rows), Int64(width), io.threads) }
        else { cq_rmsnorm_grad_x(io.f32(0), io.f32(1), io.f32(2), eps, io.out, Int64(rows), Int64(width), io.threads) }
    }
}

/// The embedding table's gradient [vocab, dim]: rows of dY [..., dim] added at their ids [...],
/// ids in order (a scatter-add whose result does not depend on the thread count).
struct EmbeddingGradOp: OpDefinition {
    var vocab: Int
    var name: String { "embedding_grad" }
    var bracketAttributes: String { "[vocab=\(vocab)]" }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("vocab", .int(vocab))] }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        guard operands[0].element == .int32 else { throw site.invalid("ids must be int32, got \(operands[0])") }
        let dy = try site.f32(1, "cotangent")
        guard site.same(operands[0].shape + [dy.last ?? 0], dy) else { throw site.mismatch("cotangent", expected: operands[0].shape + [dy.last ?? 0], actual: dy) }
        return ValueType(shape: [vocab, dy.last!], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let ids = input.operands[0].type.count, dim = input.node.type.shape[1]
        return LoweredStep(kernel: EmbeddingGradKernel(ids: ids, vocab: vocab, dim: dim), flops: ids * dim, bytesMoved: 4 * (ids + ids * dim + input.count))
    }
}

struct EmbeddingGradKernel: StepKernel {
    var ids: Int, vocab: Int, dim: Int
    var name: String { "embedding_grad(scatter-add)" }
    func workSplit(threads: Int) -> String { "\(dim) columns over up to \(threads) \(threadWord(threads)), ids in order" }
    func run(_ io: KernelIO) { cq_embedding_grad(io.int32(0), Int64(ids), io.f32(1), Int64(vocab), Int64(dim), io.out, io.threads) }
}

/// A constant: every element `value` (the loss's seed cotangent, a zero gradient).
struct FillOp: OpDefinition {
    var value: Float
    var shape: [Int]
    var name: String { "fill" }
    var bracketAttributes: String { "[\(value)]" }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("value", IRDump.number(value)), ("shape", IRDump.ints(shape))] }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(0)
        return ValueType(shape: shape, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        LoweredStep(kernel: FillKernel(value: value, count: input.count), flops: 0, bytesMoved: 4 * input.count)
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] { [] }
}

struct FillKernel: StepKernel {
    var value: Float, count: Int
    var name: String { "fill" }
    func workSplit(threads: Int) -> String { "\(count) elements, 1 thread" }
    func run(_ io: KernelIO) { cq_fill(value, io.out, Int64(count)) }
}

/// state := value, written into the state's buffer in place (gradients into a `ParameterStore`).
/// An optional third operand only orders the step after that node.
struct AssignOp: OpDefinition {
    var name: String { "assign" }
    var updatesOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        guard operands.count == 2 || operands.count == 3 else { throw site.invalid("expects 2 or 3 operands, got \(operands.count)") }
        let state = try site.f32(0, "state"), x = try site.f32(1, "value")
        guard site.same(state, x) else { throw site.mismatch("value", expected: state, actual: x) }
        return ValueType(shape: state, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        LoweredStep(kernel: AssignKernel(count: input.count), flops: 0, bytesMoved: 8 * input.count)
    }
}

struct AssignKernel: StepKernel {
    var count: Int
    var name: String { "assign(in-place)" }
    func workSplit(threads: Int) -> String { "\(count) elements, 1 thread" }
    func run(_ io: KernelIO) { cq_copy(io.f32(1), io.out, Int64(count)) }
}
