/// Pass 3: fusion by rules (`FusionRules`). The pass walks the nodes forward and tries each rule
/// at each node; a match rewrites the root in place (so ids and order stay valid), and the nodes
/// it absorbed are left for dead-code elimination. Use counts are kept exact as it goes, so a node
/// is absorbed only when nothing else (another node, an output) uses it.
enum FusionPass {
    static func run(_ input: IRGraph, rules: [FusionRule] = FusionRules.all) -> IRGraph {
        var g = input
        var uses = g.useCounts()
        for id in g.nodes.indices {
            for rule in rules {
                guard let m = PatternMatch.match(rule.pattern, at: id, in: g, uses: uses, commutative: rule.commutative),
                      let rewrite = rule.rewrite(m) else { continue }
                let old = g.nodes[id].operands
                g.nodes[id].op = rewrite.op
                g.nodes[id].operands = rewrite.operands
                if let label = rewrite.label { g.nodes[id].label = label }
                for o in rewrite.operands { uses[o] += 1 }
                for o in old { release(o, &uses, g) }
            }
        }
        return g
    }

    /// Drops one use of `id`; a node left without uses no longer uses its own operands.
    private static func release(_ id: Int, _ uses: inout [Int], _ g: IRGraph) {
        uses[id] -= 1
        if uses[id] == 0 { for o in g.nodes[id].operands { release(o, &uses, g) } }
    }
}
