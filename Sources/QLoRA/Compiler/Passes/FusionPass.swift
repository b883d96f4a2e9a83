/// Pass 3: pattern fusion.
///
/// QLoRA linear:  add?(add?(matmul(x, dequantize(W)), scale?(matmul(matmul(x, A), B))), bias)
///                → fused_qlora_linear(x, W, A, B, bias)  (the LoRA term and the bias each optional)
/// SwiGLU gate:   mul(silu(a), b) → silu_mul(a, b)
///
/// A node is absorbed only when nothing else uses it (one use, not an output); the root node is
/// rewritten in place, so ids and order stay valid; dead-code elimination removes the rest.
enum FusionPass {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        var uses = g.useCounts()
        var users = [[Int]](repeating: [], count: g.nodes.count)
        for n in g.nodes { for o in n.operands { users[o].append(n.id) } }
        for node in g.nodes {
            if node.op.is(MatmulOp.self), let fused = matchLinear(base: node.id, g, uses, users) {
                g.nodes[fused.root].op = .fusedLinear(fused.attributes)
                g.nodes[fused.root].operands = fused.operands
                if g.nodes[fused.root].label.isEmpty { g.nodes[fused.root].label = g.nodes[node.id].label }
                // A layer with a bias ends in its "<layer>.bias" add; the fused node is the whole layer.
                if fused.attributes.hasBias, g.nodes[fused.root].label.hasSuffix(".bias") {
                    g.nodes[fused.root].label.removeLast(".bias".count)
                }
                for absorbed in fused.absorbed { uses[absorbed] = 0 }
            }
        }
        for node in g.nodes {
            if node.op.as(MulOp.self)?.siluGate == false {
                for (gate, other) in [(0, 1), (1, 0)] {
                    let s = node.operands[gate]
                    if g.nodes[s].op.as(ActivationOp.self)?.function == .silu, uses[s] == 1 {
                        g.nodes[node.id].op = .siluMul
                        g.nodes[node.id].operands = [g.nodes[s].operands[0], node.operands[other]]
                        uses[s] = 0
                        break
                    }
                }
            }
        }
        return g
    }

    private struct Match {
        var root: Int
        var operands: [Int]
        var attributes: FusedLinearAttributes
        var absorbed: [Int]
    }

    private static func matchLinear(base: Int, _ g: IRGraph, _ uses: [Int], _ users: [[Int]]) -> Match? {
        let mm = g.nodes[base]
        let x = mm.operands[0], dq = mm.operands[1]
        guard g.nodes[dq].op.is(DequantizeOp.self) else { return nil }
        let weight = g.nodes[dq].operands[0]
        var root = base
        var absorbed = [base]
        var ops = ["dequantize", "matmul"]
        var lora: (a: Int, b: Int, scaling: Float)?
        var bias: Int?

        // The LoRA term: add(base, lora) or add(lora, base).
        if uses[root] == 1, let add = users[root].first, g.nodes[add].op.is(AddOp.self) {
            let other = g.nodes[add].operands[0] == root ? g.nodes[add].operands[1] : g.nodes[add].operands[0]
            if let l = matchLoraTerm(other, x: x, g, uses) {
                lora = (l.a, l.b, l.scaling)
                absorbed += l.nodes
                ops += l.ops + ["add"]
                root = add
            }
        }
        // The bias: add(y, bias) with a 1-D row.
        if uses[root] == 1, let add = users[root].first, g.nodes[add].op.is(AddOp.self),
           g.nodes[add].operands[0] == root, g.nodes[g.nodes[add].operands[1]].type.shape.count == 1 {
            absorbed.append(root)
            bias = g.nodes[add].operands[1]
            ops.append("add(bias)")
            root = add
        }
        if root != base { absorbed = absorbed.filter { $0 != root } }
        var operands = [x, weight]
        if let lora { operands += [lora.a, lora.b] }
        if let bias { operands.append(bias) }
        let attrs = FusedLinearAttributes(scaling: lora?.scaling ?? 1, hasLora: lora != nil, hasBias: bias != nil, fusedOps: ops)
        return Match(root: root, operands: operands, attributes: attrs, absorbed: absorbed)
    }

    /// scale?(matmul(matmul(x, A), B)) where every inner node has a single use.
    private static func matchLoraTerm(_ id: Int, x: Int, _ g: IRGraph, _ uses: [Int])
        -> (a: Int, b: Int, scaling: Float, nodes: [Int], ops: [String])? {
        guard uses[id] == 1 else { return nil }
        var top = id, scaling: Float = 1, nodes = [id], ops: [String] = []
        if let s = g.nodes[id].op.as(ScaleOp.self)?.factor {
            scaling = s
            top = g.nodes[id].operands[0]
            guard uses[top] == 1 else { return nil }
            nodes.append(top)
            ops.append("scale")
        }
        guard g.nodes[top].op.is(MatmulOp.self) else { return nil }
        let inner = g.nodes[top].operands[0], b = g.nodes[top].operands[1]
        guard uses[inner] == 1, g.nodes[inner].op.is(MatmulOp.self), g.nodes[inner].operands[0] == x else { return nil }
        let a = g.nodes[inner].operands[1]
        guard g.nodes[a].type.shape.count == 2, g.nodes[b].type.shape.count == 2 else { return nil }
        nodes.append(inner)
        return (a, b, scaling, nodes, ["matmul(x,A)", "matmul(·,B)"] + ops)
    }
}
