/// Pass 4d (fusion on, last): chains of `add` steps become one `add_chain` step. An add whose
/// left operand is an add (or an add chain) that nothing else reads takes that node's operands:
///
///     add(add(add(a, b), c), d)  → add_chain(a, b, c, d)       computed ((a + b) + c) + d
///
/// Only the left operand is absorbed, so the additions keep their order and the bits stay.
/// Autodiff sums a value's cotangents left to right, so the backward's gradient sums are such
/// chains (a Llama layer: the six dX contributions of q/k/v's base and LoRA paths, four of
/// gate/up's). Row broadcasts (a bias add) stay adds. Rewrites in place; the absorbed adds are
/// left for dead code.
enum AddChainFusion {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        let uses = g.useCounts()
        for n in g.nodes where n.op.is(AddOp.self) && n.operands.count == 2 {
            let (lhs, rhs) = (n.operands[0], n.operands[1])
            guard uses[lhs] == 1, g.nodes[rhs].type.shape == n.type.shape else { continue }
            let inner = g.nodes[lhs]
            let terms: [Int]
            if let chain = inner.op.as(AddChainOp.self), chain.count == inner.operands.count {
                terms = inner.operands
            } else if inner.op.is(AddOp.self), inner.operands.count == 2, g.nodes[inner.operands[1]].type.shape == inner.type.shape {
                terms = inner.operands
            } else { continue }
            g.nodes[n.id].op = Op(AddChainOp(count: terms.count + 1))
            g.nodes[n.id].operands = terms + [rhs]
        }
        return g
    }
}
