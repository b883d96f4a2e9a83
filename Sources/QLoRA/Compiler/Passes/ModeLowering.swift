/// Pass 4: decides, for every 4-bit weight, where it becomes f32.
/// - on-the-fly: fused nodes keep reading the 4-bit weight; an unfused `dequantize` runs every time.
/// - cached: the weight becomes a `cached_weight` leaf (f32, dequantized once, persistent) read by
///   the dense kernel (`cq_dense_linear`); an unfused `dequantize` of it becomes that leaf.
/// - auto: per weight, from `CostModel` with the largest M among the nodes using it.
enum ModeLowering {
    struct Decision: Sendable {
        var weight: String
        var rows: Int
        var mode: ExecutionMode
        var onTheFlySeconds: Double
        var cachedSeconds: Double
    }

    static func run(_ input: IRGraph, mode: ExecutionMode, model: CostModel) -> (graph: IRGraph, decisions: [Decision]) {
        var g = input
        var users = [[Int]](repeating: [], count: g.nodes.count)
        for n in g.nodes { for o in n.operands { users[o].append(n.id) } }
        var decisions: [Decision] = []
        for node in g.nodes {
            guard case let .quantizedWeight(storage) = node.op.leaf else { continue }
            let n = node.type.shape[0], k = node.type.shape[1]
            // Rows of the activations that meet this weight (through a dequantize for unfused graphs).
            var m = 1
            for u in users[node.id] {
                let consumers = g.nodes[u].op.is(DequantizeOp.self) ? users[u] : [u]
                for c in consumers { m = max(m, g.nodes[g.nodes[c].operands[0]].type.shape.dropLast().reduce(1, *)) }
            }
            let bits = storage.bitsPerParameter
            let otf = model.onTheFlySeconds(m: m, n: n, k: k, bitsPerWeight: bits)
            let cached = model.cachedSeconds(m: m, n: n, k: k)
            let chosen: ExecutionMode
            switch mode {
            case .onTheFly, .cached: chosen = mode
            case .auto: chosen = model.prefersCached(m: m, n: n, k: k, bitsPerWeight: bits) ? .cached : .onTheFly
            }
            decisions.append(Decision(weight: storage.name, rows: m, mode: chosen, onTheFlySeconds: otf, cachedSeconds: cached))
            guard chosen == .cached else { continue }
            // The leaf itself becomes the f32 copy: fused users switch to the dense kernel; unfused
            // dequantize users become plain aliases of it and are replaced by it.
            g.nodes[node.id].op = .cachedWeight(storage)
            g.nodes[node.id].type.element = .float32
            for u in users[node.id] where g.nodes[u].op.is(DequantizeOp.self) {
                for c in users[u] {
                    g.nodes[c].operands = g.nodes[c].operands.map { $0 == u ? node.id : $0 }
                }
                g.outputs = g.outputs.map { $0.node == u ? ($0.name, node.id) : $0 }
            }
        }
        return (g, decisions)
    }
}
