/// Pass 1a (fusion on, before autodiff): the SwiGLU gate mul(silu(a), b) whose silu nothing else
/// reads becomes silu_mul(a, b) in the recorded graph, so autodiff differentiates the fused op:
/// its vjp is one `silu_mul_grad` step, and the forward keeps no silu(a) buffer for the backward.
/// (After autodiff the silu has a second reader, the backward's mul, and the fusion rule no
/// longer applies: training plans ran silu, mul and three backward steps.) Rewrites in place, so
/// the backward request's node ids stay valid; the absorbed silu is left for dead code.
enum SwiGLUBeforeAutodiff {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        var uses = g.useCounts()
        // What the backward request names is used, whatever reads it.
        if let r = g.backward {
            uses[r.loss] += 1
            for (_, node) in r.inputGradients { uses[node] += 1 }
        }
        for n in g.nodes {
            guard let mul = n.op.as(MulOp.self), !mul.siluGate, n.operands.count == 2 else { continue }
            for (s, other) in [(0, 1), (1, 0)] {
                let silu = n.operands[s]
                guard g.nodes[silu].op.as(ActivationOp.self)?.function == .silu, uses[silu] == 1 else { continue }
                g.nodes[n.id].op = .siluMul
                g.nodes[n.id].operands = [g.nodes[silu].operands[0], n.operands[other]]
                uses[silu] = 0
                break
            }
        }
        return g
    }
}
