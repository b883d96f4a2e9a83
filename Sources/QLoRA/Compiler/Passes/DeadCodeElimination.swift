/// Pass 2: drops every node no output depends on. Declared inputs always stay (they are the
/// plan's interface, fed or not), and so do state updates (their effect outlives the run).
enum DeadCodeElimination {
    static func run(_ g: IRGraph) -> IRGraph {
        var live = [Bool](repeating: false, count: g.nodes.count)
        for o in g.outputs { live[o.node] = true }
        for i in g.inputs { live[i.node] = true }
        for n in g.nodes where n.op.definition.updatesOperand != nil { live[n.id] = true }
        for node in g.nodes.reversed() where live[node.id] {
            for o in node.operands { live[o] = true }
        }
        return g.compacted(keeping: live)
    }
}
