import CQLoRAKernels

/// Several on-the-fly fused QLoRA linears of the same input in one step (made by
/// `LinearGroupFusion`: q/k/v, gate/up): operands [x] (or [h, γ] with `normEps`: x = rms_norm(h)·γ,
/// normalized once by the step) then each member's [weight, A or x·Aᵀ, B?, bias?]. Results:
/// member i's y as result i; with `siluMul` (two members) the one result silu(y₀)·y₁ (the SwiGLU
/// gate absorbed as the epilogue), or with `keepsMembers` too, y₀, y₁ and the product as results
/// 0, 1, 2 (training: the backward's silu_mul_grad reads y₀ and y₁). Every output is computed
/// exactly as the member's own `fused_qlora_linear` step (and the rms_norm and silu_mul steps)
/// computes it.
struct FusedLinearGroupOp: OpDefinition {
    var members: [FusedLinearAttributes]
    var siluMul: Bool
    /// The product is result 2 after the members' values (results 0 and 1).
    var keepsMembers = false
    /// x is rms_norm(operand 0)·operand 1 with this epsilon, computed by the step.
    var normEps: Float? = nil

    var name: String { siluMul ? "fused_qlora_linear_group_silu_mul" : "fused_qlora_linear_group" }
    var fusedOps: [String] {
        (normEps != nil ? ["rms_norm"] : []) + members.flatMap(\.fusedOps) + (siluMul ? ["silu", "mul"] : [])
    }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("members", .array(members.map { .object(FusedLinearOp(attributes: $0).jsonAttributes) })), ("silu_mul", .bool(siluMul))]
            + (keepsMembers ? [("keeps_members", .bool(true))] : []) + (normEps.map { [("rms_norm_eps", IRDump.number($0))] } ?? [])
    }
    var bracketAttributes: String {
        var parts = normEps.map { ["rms_norm eps=\($0)"] } ?? []
        parts.append("\(members.count) weights")
        if siluMul { parts.append(keepsMembers ? "silu_mul, keeps gate/up" : "silu_mul") }
        if members.contains(where: \.hasLora) { parts.append("lora") }
        if members.contains(where: \.takesDownProjection) { parts.append("x·Aᵀ given") }
        return "[\(parts.joined(separator: ", "))]"
    }

    /// Operand indices of member i's weight, A (or x·Aᵀ), B and bias (nil when absent).
    func operandIndices() -> [(weight: Int, a: Int?, b: Int?, bias: Int?)] {
        var next = normEps == nil ? 1 : 2
        return members.map { m in
            let w = next
            next += 1
            var a: Int?, b: Int?, bias: Int?
            if m.hasLora { a = next; b = next + 1; next += 2 }
            if m.hasBias { bias = next; next += 1 }
            return (w, a, b, bias)
        }
    }

    /// Member i's operands as its own fused linear sees them: [x, weight, A?, B?, bias?] (x is
    /// operand 0, the normalized x's shape with `normEps`).
    func memberOperands<T>(_ i: Int, _ operands: [T]) -> [T] {
        let o = operandIndices()[i]
        return [operands[0], operands[o.weight]] + [o.a, o.b, o.bias].compactMap { $0.map { operands[$0] } }
    }

    private func memberTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        guard !members.isEmpty, members.count <= Int(CQ_LINEAR_GROUP_MAX), !siluMul || members.count == 2, !keepsMembers || siluMul else {
            throw site.invalid("needs 1...\(CQ_LINEAR_GROUP_MAX) members (2 with silu_mul, which keeps_members needs), got \(members.count)")
        }
        let expected = (normEps == nil ? 1 : 2) + members.reduce(0) { $0 + 1 + ($1.hasLora ? 2 : 0) + ($1.hasBias ? 1 : 0) }
        try site.arity(expected)
        if normEps != nil {
            let x = try site.f32(0, "input"), w = try site.f32(1, "rms_norm weight")
            guard let last = x.last, w.count == 1, site.same(w[0], last) else { throw site.mismatch("rms_norm weight", expected: [x.last ?? 0], actual: w) }
        }
        return try members.indices.map { i in
            let sub = OpSite(op: site.op, label: "\(site.label)#\(i)", operands: memberOperands(i, operands),
                             operandExtras: memberOperands(i, site.operandExtras), dimensions: site.dimensions)
            guard sub.operands[1].element == .quant4 else { throw sub.invalid("the group takes 4-bit weights, got \(sub.operands[1])") }
            return try FusedLinearOp(attributes: members[i]).resultType(sub.operands, at: sub)
        }
    }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        let types = try memberTypes(operands, at: site)
        if siluMul, types[0] != types[1] { throw site.mismatch("silu_mul: the two members' outputs", expected: types[0].shape, actual: types[1].shape) }
        return types[0]
    }

    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        let types = try memberTypes(operands, at: site)
        if siluMul { return keepsMembers ? [types[1], types[0]] : [] }
        return Array(types.dropFirst())
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), k = input.shape(0).last!
        let indices = operandIndices()
        let ns = indices.map { input.operands[$0.weight].type.shape[0] }
        let ranks = zip(members, indices).map { a, o in
            a.hasLora ? (a.takesDownProjection ? input.shape(o.a!).last! : input.shape(o.a!)[0]) : 0
        }
        let kernel = FusedLinearGroupKernel(m: m, k: k, members: members.indices.map {
            .init(n: ns[$0], rank: ranks[$0], scaling: members[$0].scaling, weight: indices[$0].weight,
                  a: indices[$0].a, b: indices[$0].b, bias: indices[$0].bias, givenXa: members[$0].takesDownProjection)
        }, siluMul: siluMul, keepsMembers: keepsMembers, normEps: normEps, bf16: input.options.computeType == .bfloat16)
        let scratch = kernel.normBytes + Int(cq_fused_linear_group_scratch_bytes(
            Int64(m), Int32(members.count), ns.map { Int64($0) }, Int64(k), ranks.map { Int32($0) }, siluMul && !keepsMembers ? 1 : 0, Int32(input.threads)))
        var flops = normEps != nil ? 4 * m * k : 0, bytes = 4 * m * k + (normEps != nil ? 4 * (m * k + k) : 0)
        for (i, o) in indices.enumerated() {
            let n = ns[i], r = ranks[i], given = members[i].takesDownProjection
            flops += 2 * m * n * k + 2 * m * r * (given ? n : k + n)
            bytes += (input.operands[o.weight].op.weightStorage?.memoryBytes ?? 0) + 4 * (m * n + r * ((given ? m : k) + n) + (o.bias != nil ? n : 0))
        }
        if siluMul { flops += 5 * m * ns[0] }
        return LoweredStep(kernel: kernel, flops: flops, bytesMoved: bytes, scratchBytes: scratch)
    }
}

/// Operands as `FusedLinearGroupOp` lays them out; results in `io.result(i)` (or the silu·mul
/// product in `io.out`, or in `io.result(2)` when the members' values are kept).
struct FusedLinearGroupKernel: StepKernel {
    struct Member: Sendable {
        var n: Int, rank: Int
        var scaling: Float
        var weight: Int, a: Int?, b: Int?, bias: Int?
        /// Operand `a` is x·Aᵀ [M, r] (training), not A.
        var givenXa = false
    }
    var m: Int, k: Int
    var members: [Member]
    var siluMul: Bool
    var keepsMembers = false
    var normEps: Float? = nil
    var bf16: Bool

    /// The normalized x at the start of the scratch (64-byte aligned), with `normEps`.
    var normBytes: Int { normEps == nil ? 0 : (4 * m * k + 63) & ~63 }

    var name: String {
        var parts = normEps != nil ? ["rms_norm"] : []
        parts += ["on-the-fly", "\(members.count) weights"]
        if siluMul { parts.append(keepsMembers ? "silu_mul, keeps gate/up" : "silu_mul") }
        if members.contains(where: \.givenXa) { parts.append("x·Aᵀ given") }
        if bf16 { parts.append("bf16") }
        return "fused_qlora_linear_group(\(parts.joined(separator: ", ")))"
    }
    func workSplit(threads: Int) -> String {
        let n = members.map(\.n).reduce(0, +)
        let norm = normEps != nil ? "\(m) rows normalized over up to \(threads) \(threadWord(threads)), then " : ""
        return norm + (m < Int(CQ_GEMV_MAX_M) && !bf16
            ? "\(n) output features of \(members.count) weights as one list of 4-row tiles over up to \(threads) \(threadWord(threads)), K whole per output"
            : "each weight's \(members.map { String($0.n) }.joined(separator: "/")) output features × \(m) rows in turn, split over up to \(threads) \(threadWord(threads))")
    }

    func run(_ io: KernelIO) {
        var x = io.f32(0), scratch = io.scratch
        if let eps = normEps {
            let normalized = io.scratch.assumingMemoryBound(to: Float.self)
            cq_rmsnorm(io.f32(0), io.f32(1), eps, normalized, Int64(m), Int64(k), io.threads)
            x = UnsafePointer(normalized)
            scratch += normBytes
        }
        let out = siluMul && keepsMembers ? io.result(2) : io.out
        // The member list on the stack: a run allocates nothing per step.
        withUnsafeTemporaryAllocation(of: cq_linear_member.self, capacity: members.count) { list in
            for (i, mb) in members.enumerated() {
                let y: UnsafeMutablePointer<Float>? = siluMul ? (keepsMembers ? io.result(i) : nil) : io.result(i)
                let a = mb.a.map { io.f32($0) }
                list.initializeElement(at: i, to: cq_linear_member(
                    w: io.weight(mb.weight), A: mb.givenXa ? nil : a, B: mb.b.map { io.f32($0) }, r: Int32(mb.rank),
                    scaling: mb.scaling, bias: mb.bias.map { io.f32($0) }, y: y, xa: mb.givenXa ? a : nil))
            }
            cq_fused_linear_group(x, Int64(m), Int32(members.count), list.baseAddress, siluMul ? 1 : 0, out, scratch, io.threads, bf16 ? 1 : 0)
        }
    }
}

extension FusedLinearGroupOp {
    /// Fusion runs after autodiff, so a recorded graph never holds this node.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        throw QLoraError.invalidArgument("\(name) '\(node.label)': differentiate the recorded graph (fusion runs after autodiff)")
    }
}
