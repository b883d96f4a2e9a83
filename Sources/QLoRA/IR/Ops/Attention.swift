import CQLoRAKernels

/// Causal grouped-query attention in one fused step (online softmax, tiled; the [seq, seq] score
/// matrix never exists): q [batch, seq, heads·d], k and v [batch, kvSeq, kvHeads·d] with
/// kvSeq ≥ seq. The queries are the LAST seq positions of the kvSeq keys: query i sits at
/// position kvSeq − seq + i and sees keys 0...that position (equal lengths: plain causal
/// attention; a KV cache passes its longer keys). Query head h reads KV head h / (heads / kvHeads)
/// (transformers' repeat_kv). score = (q·k)·scale, softmax over the visible keys, out = P·v.
/// Results: out [batch, seq, heads·d] and each row's log Σ exp(score) [batch, heads, seq], which the
/// backward pass uses to recompute P without storing it.
/// `segmented`: packed rows; operand 3 is int32 position ids [batch, seq] (restarting at 0 for each
/// example, as transformers' padding-free `position_ids`) and query i sees only keys
/// i − position[i] ... i, the keys of its own example (seq == kvSeq).
struct AttentionOp: OpDefinition {
    var heads: Int
    var kvHeads: Int
    var headDim: Int
    var scale: Float
    var segmented = false
    var name: String { "attention" }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("heads", .int(heads)), ("kv_heads", .int(kvHeads)), ("head_dim", .int(headDim)), ("scale", IRDump.number(scale))]
            + (segmented ? [("segmented", .bool(true))] : [])
    }
    var bracketAttributes: String { "[causal\(segmented ? ", segmented" : ""), heads=\(heads), kv_heads=\(kvHeads), head_dim=\(headDim)]" }

    /// Checks packed-row position ids [batch, seq] against q [batch, seq, ·] (segmented ops only).
    static func checkPositions(_ operands: [ValueType], at index: Int, _ site: OpSite) throws {
        let q = operands[0].shape, k = operands[1].shape, p = operands[index]
        guard site.same(q[1], k[1]) else { throw site.invalid("segmented (packed) attention needs as many keys as queries, got \(k[1]) and \(q[1])") }
        guard p.element == .int32, site.same(p.shape, [q[0], q[1]]) else {
            throw site.mismatch("position_ids (int32 [batch, seq])", expected: [q[0], q[1]], actual: p.shape)
        }
    }

    /// (batch, seq, kvSeq) after checking q, k, v.
    static func check(_ operands: [ValueType], heads: Int, kvHeads: Int, headDim: Int, _ site: OpSite) throws -> (Int, Int, Int) {
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0, headDim > 0, headDim <= 256 else {
            throw site.invalid("needs heads a multiple of kv_heads and 0 < head_dim <= 256, got heads \(heads), kv_heads \(kvHeads), head_dim \(headDim)")
        }
        let q = try site.f32(0, "q"), k = try site.f32(1, "k"), v = try site.f32(2, "v")
        guard q.count == 3, site.same(q[2], heads * headDim) else { throw site.mismatch("q [batch, seq, heads·head_dim]", expected: [q.first ?? 0, q.count > 1 ? q[1] : 0, heads * headDim], actual: q) }
        guard k.count == 3, site.same(k[0], q[0]), site.same(k[2], kvHeads * headDim) else {
            throw site.mismatch("k [batch, kv_seq, kv_heads·head_dim]", expected: [q[0], k.count > 1 ? k[1] : 0, kvHeads * headDim], actual: k)
        }
        guard site.same(v, k) else { throw site.mismatch("v (as k)", expected: k, actual: v) }
        let seq = site.resolve(q[1]), kvSeq = site.resolve(k[1])
        if seq >= 0, kvSeq >= 0, kvSeq < seq { throw site.invalid("keys (\(kvSeq) positions) must be at least as many as queries (\(seq))") }
        if seq < 0 || kvSeq < 0, !site.same(q[1], k[1]) { throw site.mismatch("k's sequence length", expected: q, actual: k) }
        return (q[0], q[1], k[1])
    }

    /// With a 4th operand, int32 [1] `kv_length`, k and v are a KV cache [batch, capacity, ·] whose
    /// first kv_length rows are live (read at run time; queries are the last seq of them).
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        if segmented {
            guard operands.count == 4 else { throw site.invalid("segmented attention expects 4 operands (q, k, v, position_ids), got \(operands.count)") }
            _ = try Self.check(Array(operands.prefix(3)), heads: heads, kvHeads: kvHeads, headDim: headDim, site)
            try Self.checkPositions(operands, at: 3, site)
            return ValueType(shape: operands[0].shape, element: .float32)
        }
        guard operands.count == 3 || operands.count == 4 else { throw site.invalid("expects 3 or 4 operands (q, k, v, kv_length?), got \(operands.count)") }
        _ = try Self.check(Array(operands.prefix(3)), heads: heads, kvHeads: kvHeads, headDim: headDim, site)
        if operands.count == 4 {
            guard operands[3].element == .int32, operands[3].count == 1 else { throw site.invalid("kv_length must be one int32, got \(operands[3])") }
        }
        return ValueType(shape: operands[0].shape, element: .float32)
    }

    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        let q = operands[0].shape
        return [ValueType(shape: [q[0], heads, q[1]], element: .float32)]
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let q = input.shape(0), k = input.shape(1)
        let kernel = AttentionKernel(batch: q[0], seq: q[1], kvSeq: k[1], heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                                     cached: !segmented && input.operands.count == 4, segmented: segmented, label: input.node.label)
        let pairs = q[0] * heads * q[1] * (k[1] - q[1]) + q[0] * heads * q[1] * (q[1] + 1) / 2
        return LoweredStep(kernel: kernel, flops: 4 * pairs * headDim,
                           bytesMoved: 4 * (2 * input.operands[0].type.count + 2 * input.operands[1].type.count + q[0] * heads * q[1]))
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        if !segmented, node.operands.count == 4 { throw QLoraError.invalidArgument("attention '\(node.label)': attention over a KV cache is inference only") }
        if d.resultCotangent(1) != nil {
            throw QLoraError.invalidArgument("attention '\(node.label)': no gradient flows through its log-sum-exp result")
        }
        let lse = try d.emit(Op(ResultOp(index: 1)), [node.id], label: "\(node.label).lse")
        let label = "grad.\(node.label)"
        let grad = try d.emit(Op(AttentionGradOp(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale, segmented: segmented)),
                              node.operands + [node.id, lse, cotangent], label: label)
        let dk = try d.emit(Op(ResultOp(index: 1)), [grad], label: "\(label).k")
        let dv = try d.emit(Op(ResultOp(index: 2)), [grad], label: "\(label).v")
        return [d.wants(node, 0) ? grad : nil, d.wants(node, 1) ? dk : nil, d.wants(node, 2) ? dv : nil] + (segmented ? [nil] : [])
    }
}

struct AttentionKernel: StepKernel {
    var batch: Int, seq: Int, kvSeq: Int, heads: Int, kvHeads: Int, headDim: Int
    var scale: Float
    /// kvSeq is a cache's capacity and operand 3 the live length.
    var cached = false
    /// Operand 3 is position ids [batch, seq] (packed rows).
    var segmented = false
    var label = ""
    var name: String {
        cached ? "attention(causal, online softmax, KV cache)" : segmented ? "attention(causal within segments, online softmax)" : "attention(causal, online softmax)"
    }
    func workSplit(threads: Int) -> String {
        "(batch, KV head, query tile) units of up to 48 rows (the group's heads × queries) over up to \(threads) \(threadWord(threads)), keys in order"
    }
    func run(_ io: KernelIO) throws {
        if segmented {
            let positions = io.int32(3)
            try checkPackedPositions(positions, batch: batch, seq: seq, label: label)
            cq_attention_segmented(io.f32(0), io.f32(1), io.f32(2), positions, io.out, io.result(1), Int64(batch), Int64(seq),
                                   Int64(heads), Int64(kvHeads), Int64(headDim), scale, io.threads)
            return
        }
        var length = kvSeq
        if cached {
            length = Int(io.int32(3)[0])
            guard length >= seq, length <= kvSeq else {
                throw QLoraError.invalidArgument("attention '\(label)': kv_length \(length) must be from \(seq) (the queries) to the cache's \(kvSeq) positions")
            }
        }
        cq_attention_cached(io.f32(0), io.f32(1), io.f32(2), io.out, io.result(1), Int64(batch), Int64(seq), Int64(length), Int64(kvSeq),
                            Int64(heads), Int64(kvHeads), Int64(headDim), scale, io.threads)
    }
}

/// The attention's gradients from operands [q, k, v, out, lse, dOut]: dq (result 0), dk and dv
/// (results 1, 2), scores recomputed from q, k and the saved log-sum-exp (flash-attention style).
/// Segmented: operands [q, k, v, position_ids, out, lse, dOut].
struct AttentionGradOp: OpDefinition {
    var heads: Int, kvHeads: Int, headDim: Int
    var scale: Float
    var segmented = false
    var name: String { "attention_grad" }
    var bracketAttributes: String { "[causal\(segmented ? ", segmented" : ""), heads=\(heads), kv_heads=\(kvHeads), head_dim=\(headDim)]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        let base = segmented ? 4 : 3
        try site.arity(base + 3)
        let (batch, seq, _) = try AttentionOp.check(Array(operands.prefix(3)), heads: heads, kvHeads: kvHeads, headDim: headDim, site)
        if segmented { try AttentionOp.checkPositions(operands, at: 3, site) }
        let o = try site.f32(base, "out"), lse = try site.f32(base + 1, "lse"), g = try site.f32(base + 2, "cotangent")
        guard site.same(o, operands[0].shape), site.same(g, operands[0].shape) else { throw site.mismatch("out and cotangent (as q)", expected: operands[0].shape, actual: g) }
        guard site.same(lse, [batch, heads, seq]) else { throw site.mismatch("lse [batch, heads, seq]", expected: [batch, heads, seq], actual: lse) }
        return ValueType(shape: operands[0].shape, element: .float32)
    }

    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        [ValueType(shape: operands[1].shape, element: .float32), ValueType(shape: operands[2].shape, element: .float32)]
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let q = input.shape(0), k = input.shape(1)
        let kernel = AttentionGradKernel(batch: q[0], seq: q[1], kvSeq: k[1], heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale,
                                         segmented: segmented)
        let pairs = q[0] * heads * q[1] * (k[1] - q[1]) + q[0] * heads * q[1] * (q[1] + 1) / 2
        // Five products per visible (query, key) pair: S and dP recomputed, dq, dk, dv.
        return LoweredStep(kernel: kernel, flops: 10 * pairs * headDim,
                           bytesMoved: 4 * (6 * input.operands[0].type.count + 4 * input.operands[1].type.count),
                           scratchBytes: Int(cq_attention_grad_scratch_bytes(Int64(q[0]), Int64(q[1]), Int64(k[1]), Int64(heads), Int64(kvHeads),
                                                                           Int64(headDim))))
    }
}

struct AttentionGradKernel: StepKernel {
    var batch: Int, seq: Int, kvSeq: Int, heads: Int, kvHeads: Int, headDim: Int
    var scale: Float
    var segmented = false
    var name: String { segmented ? "attention_grad(causal within segments, recomputed scores)" : "attention_grad(causal, recomputed scores)" }
    func workSplit(threads: Int) -> String {
        let chunks = Int(cq_attention_grad_chunks(Int64(batch), Int64(kvHeads), Int64(kvSeq)))
        return "\(batch * kvHeads * chunks) (batch, KV head, key chunk) units over up to \(threads) \(threadWord(threads)), "
            + "each owning its keys' dk/dv and a partial dq; the \(chunks) partials added in order"
    }
    func run(_ io: KernelIO) throws {
        if segmented {
            let positions = io.int32(3)
            try checkPackedPositions(positions, batch: batch, seq: seq, label: "grad")
            cq_attention_grad_segmented(io.f32(0), io.f32(1), io.f32(2), positions, io.f32(4), io.f32(5), io.f32(6), io.out, io.result(1), io.result(2),
                                        io.scratch, Int64(batch), Int64(seq), Int64(kvSeq), Int64(heads), Int64(kvHeads), Int64(headDim), scale, io.threads)
            return
        }
        cq_attention_grad(io.f32(0), io.f32(1), io.f32(2), io.f32(3), io.f32(4), io.f32(5), io.out, io.result(1), io.result(2), io.scratch,
                          Int64(batch), Int64(seq), Int64(kvSeq), Int64(heads), Int64(kvHeads), Int64(headDim), scale, io.threads)
    }
}

/// Packed-row position ids must restart at 0 and count up by one inside an example: each is 0 or
/// the previous + 1 (so an example is one contiguous run and its keys are i − position ... i).
func checkPackedPositions(_ p: UnsafePointer<Int32>, batch: Int, seq: Int, label: String) throws {
    for b in 0..<batch {
        for i in 0..<seq {
            let v = p[b * seq + i]
            guard v == 0 || (i > 0 && v == p[b * seq + i - 1] &+ 1) else {
                throw QLoraError.invalidArgument("attention '\(label)': position_ids[\(b), \(i)] is \(v); in packed rows each position is 0 (an example's start) or the previous position + 1"
                    + (i > 0 ? " (\(p[b * seq + i - 1]) + 1)" : ""))
            }
        }
    }
}

extension Graph {
    /// Causal grouped-query attention (one fused step): q [batch, seq, heads·headDim], k and v
    /// [batch, kvSeq, kvHeads·headDim] (kvSeq ≥ seq: the queries are the last seq positions).
    /// `scale` defaults to headDim^-0.5, applied after the dot product.
    /// With `kvLength` (int32 [1]), k and v are a KV cache [batch, capacity, kvHeads·headDim] of
    /// which the first kvLength rows are live at run time.
    /// With `positionIds` (int32 [batch, seq], restarting at 0 for each example), the rows are
    /// packed: query i attends to keys i − positionIds[i] ... i only (never across examples).
    public func attention(q: Value, k: Value, v: Value, heads: Int, kvHeads: Int, headDim: Int, scale: Float? = nil,
                          kvLength: Value? = nil, positionIds: Value? = nil, label: String = "") throws -> Value {
        if kvLength != nil, positionIds != nil {
            throw QLoraError.invalidArgument("attention '\(label)': packed rows (position ids) and a KV cache (kv_length) do not combine")
        }
        let op = AttentionOp(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: scale ?? Float(1 / Double(headDim).squareRoot()),
                             segmented: positionIds != nil)
        return try recordResults(Op(op), [q, k, v] + (kvLength.map { [$0] } ?? []) + (positionIds.map { [$0] } ?? []), label)[0]
    }
}
