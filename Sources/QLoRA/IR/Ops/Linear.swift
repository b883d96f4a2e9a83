import CQLoRAKernels

/// The linear-algebra ops: dequantize, matmul, and the fused QLoRA linear that fusion makes of
/// dequantize → matmul → LoRA → add → bias.

/// 4-bit weight → f32 [out, in].
struct DequantizeOp: OpDefinition {
    var name: String { "dequantize" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        guard operands[0].element == .quant4 else { throw site.invalid("operand must be a 4-bit weight, got \(operands[0])") }
        return ValueType(shape: operands[0].shape, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        LoweredStep(kernel: DequantizeKernel(), flops: input.count,
                    bytesMoved: 4 * input.count + (input.operands[0].op.weightStorage?.memoryBytes ?? 0))
    }
}

struct DequantizeKernel: StepKernel {
    var name: String { "dequantize" }
    func workSplit(threads: Int) -> String { "weight blocks over \(threads) \(threadWord(threads))" }
    func run(_ io: KernelIO) { cq_dequantize_4bit(io.weight(0), io.out, io.threads) }
}

/// x·Wᵀ: x [..., K], W [N, K] → [..., N].
struct MatmulOp: OpDefinition {
    var name: String { "matmul" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let x = try site.f32(0, "input"), w = try site.f32(1, "weight")
        try checkLinear(x: x, weight: w, site)
        return ValueType(shape: x.dropLast() + [w[0]], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), w = input.shape(1)
        var exact: ParameterStorage?
        if case let .parameter(p)? = input.operands[1].op.leaf, p.exactInt8 != nil { exact = p }
        let bf16 = input.bf16AgainstFrozenWeight(operand: 1) && m >= Int(CQ_BF16_NT_MIN_M)
        return LoweredStep(kernel: MatmulKernel(m: m, n: w[0], k: w[1], exactSource: exact, bf16: bf16), flops: 2 * m * w[0] * w[1],
                           bytesMoved: 4 * (m * w[1] + w[0] * w[1] + m * w[0]),
                           scratchBytes: Int(cq_matmul_nt_scratch_bytes(Int64(m), Int64(w[1]), Int32(input.threads))))
    }
}

struct MatmulKernel: StepKernel {
    var m: Int, n: Int, k: Int
    /// The weight parameter when it had an exact int8 form at planning (read again at each run,
    /// under the executor's lock, so an `assign` since then is seen).
    var exactSource: ParameterStorage? = nil
    /// bf16 compute (a frozen weight, `computeType: .bfloat16`): f32 where the CPU lacks AVX512-BF16.
    var bf16 = false
    var name: String { bf16 ? "matmul(sgemm, bf16)" : exactSource != nil && m < 8 ? "matmul(exact int8 rows)" : "matmul(sgemm)" }
    func workSplit(threads: Int) -> String { linearWorkSplit(m: m, n: n, threads: threads) }
    func run(_ io: KernelIO) {
        if bf16, cq_matmul_nt_bf16(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), io.out, io.scratch, io.threads) != 0 { return }
        if let form = exactSource?.exactInt8 {
            cq_matmul_nt_exact(io.f32(0), Int64(m), io.f32(1), form.codes, form.scales, Int64(n), Int64(k), io.out, io.scratch, io.threads)
        } else {
            cq_matmul_nt(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), io.out, io.scratch, io.threads)
        }
    }
}

/// Attributes of the fused QLoRA linear node the fusion pass creates:
/// y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ + bias, operands [x, weight, A?, B?, bias?].
public struct FusedLinearAttributes: Sendable, Equatable {
    public var scaling: Float
    public var hasLora: Bool
    public var hasBias: Bool
    /// The names of the nodes the fusion replaced, for printers and plan summaries.
    public var fusedOps: [String]
    /// Training: operand 2 is x·Aᵀ [..., r] (a `lora_down` step the backward's dB = (dY·s)ᵀ·(x·Aᵀ)
    /// also reads) instead of A, so x·Aᵀ is computed once (`DownProjectionHandOff`).
    public var takesDownProjection = false
}

/// The fused QLoRA linear (made by fusion). Its weight operand is the 4-bit weight (on-the-fly
/// kernel) or, after mode lowering, the cached f32 copy (OpenBLAS-free dense kernel).
struct FusedLinearOp: OpDefinition {
    var attributes: FusedLinearAttributes
    var name: String { "fused_qlora_linear" }
    var fusedOps: [String] { attributes.fusedOps }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("scaling", IRDump.number(attributes.scaling)), ("has_lora", .bool(attributes.hasLora)), ("has_bias", .bool(attributes.hasBias)),
         ("fused_ops", .array(attributes.fusedOps.map { .string($0) }))] + (attributes.takesDownProjection ? [("takes_xa", .bool(true))] : [])
    }
    var bracketAttributes: String {
        var parts: [String] = []
        if attributes.hasLora { parts.append("lora, scaling=\(attributes.scaling)") }
        if attributes.takesDownProjection { parts.append("x·Aᵀ given") }
        if attributes.hasBias { parts.append("bias") }
        return parts.isEmpty ? "" : "[\(parts.joined(separator: ", "))]"
    }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        let a = attributes
        try site.arity(2 + (a.hasLora ? 2 : 0) + (a.hasBias ? 1 : 0))
        let x = try site.f32(0, "input"), w = operands[1].shape
        try checkLinear(x: x, weight: w, site)
        let n = w[0], k = w[1]
        var next = 2
        if a.hasLora && a.takesDownProjection {
            let xa = try site.f32(2, "x·Aᵀ"), lb = try site.f32(3, "lora_B")
            guard xa.count == x.count, site.same(Array(xa.dropLast()), Array(x.dropLast())), let r = xa.last, r > 0 else {
                throw site.mismatch("x·Aᵀ [..., r]", expected: Array(x.dropLast()) + [xa.last ?? 0], actual: xa)
            }
            guard lb == [n, r] else { throw site.mismatch("lora_B [out, r]", expected: [n, r], actual: lb) }
            next = 4
        } else if a.hasLora {
            let la = try site.f32(2, "lora_A"), lb = try site.f32(3, "lora_B")
            guard la.count == 2, la[1] == k, la[0] > 0 else { throw site.mismatch("lora_A [r, in]", expected: [la.first ?? 0, k], actual: la) }
            guard lb == [n, la[0]] else { throw site.mismatch("lora_B [out, r]", expected: [n, la[0]], actual: lb) }
            next = 4
        }
        if a.hasBias {
            let bias = try site.f32(next, "bias")
            guard bias == [n] else { throw site.mismatch("bias", expected: [n], actual: bias) }
        }
        return ValueType(shape: x.dropLast() + [n], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let a = attributes, w = input.operands[1]
        let m = input.rows(0), n = w.type.shape[0], k = w.type.shape[1]
        let r = a.hasLora ? (a.takesDownProjection ? input.shape(2).last! : input.shape(2)[0]) : 0
        let quantized = w.type.element == .quant4
        let weightBytes = quantized ? (w.op.weightStorage?.memoryBytes ?? 0) : 4 * n * k
        let t = Int32(input.threads)
        let kernel = FusedLinearKernel(m: m, n: n, k: k, rank: r, scaling: a.scaling, hasBias: a.hasBias, quantized: quantized,
                                       bf16: quantized && input.options.computeType == .bfloat16, takesDownProjection: a.takesDownProjection && r > 0)
        let scratch = quantized ? cq_fused_linear_scratch_bytes(Int64(m), Int64(n), Int64(k), Int32(r), t)
                                : cq_dense_linear_scratch_bytes(Int64(m), Int64(n), Int64(k), Int32(r), t)
        let down = kernel.takesDownProjection   // x·Aᵀ read, not computed
        return LoweredStep(kernel: kernel, flops: 2 * m * n * k + 2 * m * r * (down ? n : k + n),
                           bytesMoved: weightBytes + 4 * (m * k + m * n + (down ? m * r : r * k) + r * n + (a.hasBias ? n : 0)),
                           scratchBytes: Int(scratch),
                           // A cached weight is already f32: the step no longer dequantizes.
                           fusedOps: quantized ? nil : a.fusedOps.filter { $0 != "dequantize" })
    }
}

/// Operands [x, weight, A?, B?, bias?]: the on-the-fly fused dequant-GEMM (4-bit weight; `bf16`
/// asks for bf16 compute where the CPU and shape allow it) or the dense kernel over the cached copy.
struct FusedLinearKernel: StepKernel {
    var m: Int, n: Int, k: Int, rank: Int
    var scaling: Float
    var hasBias: Bool
    var quantized: Bool
    var bf16: Bool
    /// Operand 2 is x·Aᵀ, not A (training).
    var takesDownProjection = false

    var name: String {
        (quantized ? (bf16 ? "fused_qlora_linear(on-the-fly, bf16)" : "fused_qlora_linear(on-the-fly)") : "dense_qlora_linear(cached)")
            + (takesDownProjection ? "(x·Aᵀ given)" : "")
    }
    func workSplit(threads: Int) -> String { linearWorkSplit(m: m, n: n, threads: threads) }

    func run(_ io: KernelIO) {
        let r = rank
        let a = r > 0 ? io.f32(2) : nil, b = r > 0 ? io.f32(3) : nil
        let bias = hasBias ? io.f32IfPresent(r > 0 ? 4 : 2) : nil
        if takesDownProjection {
            if quantized {
                _ = cq_fused_linear_given_xa(io.f32(0), Int64(m), io.weight(1), a, b, Int32(r), scaling, bias, io.out, io.scratch, io.threads, bf16 ? 1 : 0)
            } else {
                cq_dense_linear_given_xa(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), a, b, Int32(r), scaling, bias, io.out, io.scratch, io.threads)
            }
        } else if quantized {
            _ = cq_fused_linear_ex(io.f32(0), Int64(m), io.weight(1), a, b, Int32(r), scaling, bias, io.out, io.scratch, io.threads, bf16 ? 1 : 0)
        } else {
            cq_dense_linear(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), a, b, Int32(r), scaling, bias, io.out, io.scratch, io.threads)
        }
    }
}

/// x·Aᵀ for the LoRA down-projection: x [..., K], A [r, K] → [..., r], computed as the fused
/// kernels compute it internally (`cq_lora_down`), so a training forward that keeps it for the
/// backward (`DownProjectionHandOff`) gives the inference forward's bits. Made by that pass only.
struct LoraDownOp: OpDefinition {
    var name: String { "lora_down" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try MatmulOp().resultType(operands, at: site)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), a = input.shape(1)
        return LoweredStep(kernel: LoraDownKernel(m: m, k: a[1], r: a[0]), flops: 2 * m * a[0] * a[1], bytesMoved: 4 * (m * a[1] + a[0] * a[1] + m * a[0]))
    }
}

struct LoraDownKernel: StepKernel {
    var m: Int, k: Int, r: Int
    var name: String { "lora_down(x·Aᵀ)" }
    func workSplit(threads: Int) -> String { "\(m * r) outputs over up to \(threads) \(threadWord(threads)), K whole per output" }
    func run(_ io: KernelIO) { cq_lora_down(io.f32(0), Int64(m), Int64(k), io.f32(1), Int32(r), io.out, io.threads) }
}

/// What each thread of a linear kernel computes: rows of the weight (output features), with the
/// reduction over K whole in one thread.
private func linearWorkSplit(m: Int, n: Int, threads: Int) -> String {
    "\(n) output features × \(m) rows, features split over up to \(threads) \(threadWord(threads)), K whole per output"
}

/// x [..., K] (rank 1 to 3) against a weight [N, K].
private func checkLinear(x: [Int], weight w: [Int], _ site: OpSite) throws {
    guard w.count == 2 else { throw site.mismatch("weight must be [out, in]", expected: [w.first ?? 0, x.last ?? 0], actual: w) }
    guard (1...3).contains(x.count) else { throw site.mismatch("input must be [in], [M, in] or [B, S, in]", expected: [w[1]], actual: x) }
    guard site.same(x.last!, w[1]) else {
        throw site.mismatch("input's last dimension vs weight [out, in]", expected: Array(x.dropLast()) + [w[1]], actual: x)
    }
}

extension Op {
    static var dequantize: Op { Op(DequantizeOp()) }
    static var matmul: Op { Op(MatmulOp()) }
    static func fusedLinear(_ attributes: FusedLinearAttributes) -> Op { Op(FusedLinearOp(attributes: attributes)) }
}

extension Graph {
    public func dequantize(_ w: Value, label: String = "") throws -> Value { try record(.dequantize, [w], label) }
    /// x·Wᵀ for x [..., K] and W [N, K].
    public func matmul(_ x: Value, _ w: Value, label: String = "") throws -> Value { try record(.matmul, [x, w], label) }
}

// MARK: - Vector-Jacobian products

extension DequantizeOp {
    /// The 4-bit weight is frozen: no gradient.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] { [nil] }
}

extension MatmulOp {
    /// y = x·Wᵀ: dx = dy·W (through the 4-bit weight on the fly when W = dequantize(W4), never an
    /// f32 copy), dW = dyᵀ·x.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let x = node.operands[0], w = node.operands[1]
        var dx: Int?, dw: Int?
        if d.wants(node, 0) {
            let wNode = d.graph.nodes[w]
            let weight = wNode.op.is(DequantizeOp.self) ? wNode.operands[0] : w
            dx = try d.emit(Op(MatmulNNOp()), [cotangent, weight], label: "grad.\(node.label).x")
        }
        if d.wants(node, 1) { dw = try d.emit(Op(MatmulTNOp()), [cotangent, x], label: "grad.\(node.label).w") }
        return [dx, dw]
    }
}

extension FusedLinearOp {
    /// Fusion runs after autodiff, so a recorded graph never holds this node.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        throw QLoraError.invalidArgument("fused_qlora_linear '\(node.label)': differentiate the recorded graph (fusion runs after autodiff)")
    }
}
