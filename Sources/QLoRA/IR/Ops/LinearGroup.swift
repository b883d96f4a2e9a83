import CQLoRAKernels

/// Several on-the-fly fused QLoRA linears of the same input in one step (made by
/// `LinearGroupFusion`: q/k/v, gate/up): operands [x] then each member's [weight, A?, B?, bias?].
/// Results: member i's y as result i, or with `siluMul` (two members) the one result
/// silu(y₀)·y₁ (the SwiGLU gate absorbed as the epilogue). Every output is computed exactly as
/// the member's own `fused_qlora_linear` step computes it.
struct FusedLinearGroupOp: OpDefinition {
    var members: [FusedLinearAttributes]
    var siluMul: Bool
    var name: String { siluMul ? "fused_qlora_linear_group_silu_mul" : "fused_qlora_linear_group" }
    var fusedOps: [String] {
        members.flatMap(\.fusedOps) + (siluMul ? ["silu", "mul"] : [])
    }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("members", .array(members.map { .object(FusedLinearOp(attributes: $0).jsonAttributes) })), ("silu_mul", .bool(siluMul))]
    }
    var bracketAttributes: String {
        "[\(members.count) weights\(siluMul ? ", silu_mul" : "")\(members.contains(where: \.hasLora) ? ", lora" : "")]"
    }

    /// Operand indices of member i's weight, A, B and bias (nil when absent).
    func operandIndices() -> [(weight: Int, a: Int?, b: Int?, bias: Int?)] {
        var next = 1
        return members.map { m in
            let w = next
            next += 1
            var a: Int?, b: Int?, bias: Int?
            if m.hasLora { a = next; b = next + 1; next += 2 }
            if m.hasBias { bias = next; next += 1 }
            return (w, a, b, bias)
        }
    }

    /// Member i's operands as its own fused linear sees them: [x, weight, A?, B?, bias?].
    func memberOperands<T>(_ i: Int, _ operands: [T]) -> [T] {
        let o = operandIndices()[i]
        return [operands[0], operands[o.weight]] + [o.a, o.b, o.bias].compactMap { $0.map { operands[$0] } }
    }

    private func memberTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        guard !members.isEmpty, members.count <= Int(CQ_LINEAR_GROUP_MAX), !siluMul || members.count == 2 else {
            throw site.invalid("needs 1...\(CQ_LINEAR_GROUP_MAX) members (2 with silu_mul), got \(members.count)")
        }
        let expected = 1 + members.reduce(0) { $0 + 1 + ($1.hasLora ? 2 : 0) + ($1.hasBias ? 1 : 0) }
        try site.arity(expected)
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
        siluMul ? [] : Array(try memberTypes(operands, at: site).dropFirst())
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let m = input.rows(0), k = input.shape(0).last!
        let indices = operandIndices()
        let ns = indices.map { input.operands[$0.weight].type.shape[0] }
        let ranks = zip(members, indices).map { a, o in a.hasLora ? input.operands[o.a!].type.shape[0] : 0 }
        let kernel = FusedLinearGroupKernel(m: m, k: k, members: members.indices.map {
            .init(n: ns[$0], rank: ranks[$0], scaling: members[$0].scaling, weight: indices[$0].weight,
                  a: indices[$0].a, b: indices[$0].b, bias: indices[$0].bias)
        }, siluMul: siluMul, bf16: input.options.computeType == .bfloat16)
        let scratch = cq_fused_linear_group_scratch_bytes(Int64(m), Int32(members.count), ns.map { Int64($0) }, Int64(k),
                                                          ranks.map { Int32($0) }, siluMul ? 1 : 0, Int32(input.threads))
        var flops = 0, bytes = 4 * m * k
        for (i, o) in indices.enumerated() {
            let n = ns[i], r = ranks[i]
            flops += 2 * m * n * k + 2 * m * r * (k + n)
            bytes += (input.operands[o.weight].op.weightStorage?.memoryBytes ?? 0) + 4 * (m * n + r * (k + n) + (o.bias != nil ? n : 0))
        }
        if siluMul { flops += 5 * m * ns[0] }
        return LoweredStep(kernel: kernel, flops: flops, bytesMoved: bytes, scratchBytes: Int(scratch))
    }
}

/// Operands as `FusedLinearGroupOp` lays them out; results in `io.result(i)` (or the silu·mul
/// product in `io.out`).
struct FusedLinearGroupKernel: StepKernel {
    struct Member: Sendable {
        var n: Int, rank: Int
        var scaling: Float
        var weight: Int, a: Int?, b: Int?, bias: Int?
    }
    var m: Int, k: Int
    var members: [Member]
    var siluMul: Bool
    var bf16: Bool

    var name: String {
        "fused_qlora_linear_group(on-the-fly, \(members.count) weights\(siluMul ? ", silu_mul" : "")\(bf16 ? ", bf16" : ""))"
    }
    func workSplit(threads: Int) -> String {
        let n = members.map(\.n).reduce(0, +)
        return m < Int(CQ_GEMV_MAX_M) && !bf16
            ? "\(n) output features of \(members.count) weights as one list of 4-row tiles over up to \(threads) \(threadWord(threads)), K whole per output"
            : "each weight's \(members.map { String($0.n) }.joined(separator: "/")) output features × \(m) rows in turn, split over up to \(threads) \(threadWord(threads))"
    }

    func run(_ io: KernelIO) {
        var list = members.enumerated().map { i, mb in
            cq_linear_member(w: io.weight(mb.weight), A: mb.a.map { io.f32($0) }, B: mb.b.map { io.f32($0) }, r: Int32(mb.rank),
                             scaling: mb.scaling, bias: mb.bias.map { io.f32($0) }, y: siluMul ? nil : io.result(i), xa: nil)
        }
        list.withUnsafeMutableBufferPointer {
            cq_fused_linear_group(io.f32(0), Int64(m), Int32(members.count), $0.baseAddress, siluMul ? 1 : 0, io.out, io.scratch,
                                  io.threads, bf16 ? 1 : 0)
        }
    }
}

extension FusedLinearGroupOp {
    /// Fusion runs after autodiff, so a recorded graph never holds this node.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        throw QLoraError.invalidArgument("\(name) '\(node.label)': differentiate the recorded graph (fusion runs after autodiff)")
    }
}
