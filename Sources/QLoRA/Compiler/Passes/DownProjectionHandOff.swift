/// Pass 3b (after fusion and dead code): the fused forward hands x·Aᵀ to the backward.
///
/// In a training graph the LoRA down-projection `matmul(x, A)` has a second reader besides the
/// branch fusion absorbed: the backward's dB = (dY·s)ᵀ·(x·Aᵀ). Fusion still makes the fused
/// linear (the pattern shares that node), so x·Aᵀ would be computed twice: inside the kernel and
/// by the leftover matmul. Here the fused node, which computes x·Aᵀ anyway, writes it as a second
/// result (`keepsDownProjection`), a `result[1]` node follows it, and every remaining reader of
/// the matmul reads that instead; the matmul dies. Inference graphs have no such reader, so their
/// fused nodes are unchanged.
enum DownProjectionHandOff {
    static func run(_ g: IRGraph) -> IRGraph {
        var readers = [[Int]](repeating: [], count: g.nodes.count)
        for n in g.nodes { for o in n.operands { readers[o].append(n.id) } }
        // fused node → the down-projection matmul it takes over
        var takeOver: [Int: Int] = [:]
        var claimed = Set<Int>()
        for n in g.nodes {
            guard let f = n.op.as(FusedLinearOp.self), f.attributes.hasLora, !f.attributes.keepsDownProjection else { continue }
            let x = n.operands[0], a = n.operands[2]
            // The matmul must come before the fused node and be read only after it.
            guard let mm = readers[x].first(where: { m in
                m < n.id && !claimed.contains(m) && g.nodes[m].op.is(MatmulOp.self) && g.nodes[m].operands == [x, a]
                    && readers[m].allSatisfy { $0 > n.id }
            }) else { continue }
            takeOver[n.id] = mm
            claimed.insert(mm)
        }
        guard !takeOver.isEmpty else { return g }

        var out = IRGraph()
        var remap = [Int](repeating: -1, count: g.nodes.count)
        for n in g.nodes {
            if n.id == g.forwardCount { out.forwardCount = out.nodes.count }
            var copy = n
            copy.id = out.nodes.count
            copy.operands = n.operands.map { remap[$0] }
            remap[n.id] = copy.id
            guard let mm = takeOver[n.id], var attributes = n.op.as(FusedLinearOp.self)?.attributes else {
                out.nodes.append(copy)
                continue
            }
            attributes.keepsDownProjection = true
            copy.op = .fusedLinear(attributes)
            copy.extraResults = [g.nodes[mm].type]
            out.nodes.append(copy)
            let result = Node(id: out.nodes.count, op: Op(ResultOp(index: 1)), operands: [copy.id], type: g.nodes[mm].type,
                              label: g.nodes[mm].label)
            out.nodes.append(result)
            remap[mm] = result.id   // every later reader of the matmul reads the kept result
        }
        if out.forwardCount == nil, g.forwardCount != nil { out.forwardCount = out.nodes.count }
        out.inputs = g.inputs.map { ($0.name, remap[$0.node]) }
        out.outputs = g.outputs.map { ($0.name, remap[$0.node]) }
        return out
    }
}
