/// Pass 3b (after fusion and dead code): the forward hands x·Aᵀ to the backward.
///
/// In a training graph the LoRA down-projection `matmul(x, A)` has a second reader besides the
/// branch fusion absorbed: the backward's dB = (dY·s)ᵀ·(x·Aᵀ). Fusion still makes the fused
/// linear (the pattern shares that node), so x·Aᵀ would be computed twice: inside the kernel and
/// by the leftover matmul. Here the matmul becomes a `lora_down` step (`cq_lora_down`, the fused
/// kernels' own x·Aᵀ, so the bits are the inference forward's) and the fused node takes its result
/// in place of A (`takesDownProjection`): x·Aᵀ is computed once, kept in its own small [M, r]
/// buffer for the backward, and the layer's output y is freed as early as before. (Writing x·Aᵀ
/// as a second result of the fused step would tie y's buffer to x·Aᵀ's lifetime.) Inference graphs
/// have no such reader, so their fused nodes are unchanged. Rewrites in place: ids stay valid.
enum DownProjectionHandOff {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        var readers = [[Int]](repeating: [], count: g.nodes.count)
        for n in g.nodes { for o in n.operands { readers[o].append(n.id) } }
        var claimed = Set<Int>()
        for n in g.nodes {
            guard var attributes = n.op.as(FusedLinearOp.self)?.attributes, attributes.hasLora, !attributes.takesDownProjection else { continue }
            let x = n.operands[0], a = n.operands[2]
            guard let mm = readers[x].first(where: { m in
                m < n.id && !claimed.contains(m) && g.nodes[m].op.is(MatmulOp.self) && g.nodes[m].operands == [x, a]
            }) else { continue }
            claimed.insert(mm)
            g.nodes[mm].op = Op(LoraDownOp())
            attributes.takesDownProjection = true
            attributes.fusedOps.removeAll { $0 == "matmul(x,A)" }
            g.nodes[n.id].op = .fusedLinear(attributes)
            g.nodes[n.id].operands[2] = mm
        }
        return g
    }
}
