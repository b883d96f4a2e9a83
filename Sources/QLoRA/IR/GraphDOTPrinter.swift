/// Renders the IR as a Graphviz digraph (`dot -Tsvg`). Inputs are ellipses, weights and parameters
/// notes, computing nodes boxes; each fused node (fused_qlora_linear, silu_mul) sits in a
/// `subgraph cluster_N` labelled with the ops it replaced, together with the leaves only it reads.
enum GraphDOTPrinter {
    static func dot(_ g: IRGraph, title: String) -> String {
        let uses = g.useCounts()
        var clusterOf = [Int?](repeating: nil, count: g.nodes.count)
        var clusters: [(root: Int, fused: [String])] = []
        for n in g.nodes {
            let fused = n.op.definition.fusedOps
            if fused.isEmpty { continue }
            clusterOf[n.id] = clusters.count
            for o in n.operands where g.nodes[o].op.isLeaf && uses[o] == 1 {
                if case .input = g.nodes[o].op.leaf { continue }
                clusterOf[o] = clusters.count
            }
            clusters.append((n.id, fused))
        }
        var lines = ["digraph \"\(escape(title))\" {", "  rankdir=TB;", "  graph [fontname=\"Helvetica\"];",
                     "  node [fontname=\"Helvetica\", fontsize=10];", "  edge [fontname=\"Helvetica\", fontsize=9];"]
        for n in g.nodes where clusterOf[n.id] == nil { lines.append("  " + node(n)) }
        for (i, c) in clusters.enumerated() {
            lines.append("  subgraph cluster_\(i) {")
            lines.append("    label=\"\(escape(c.fused.joined(separator: " → ")))\";")
            lines.append("    style=\"rounded,filled\"; fillcolor=\"#eef4ff\"; color=\"#5b7db8\"; fontsize=9;")
            for n in g.nodes where clusterOf[n.id] == i { lines.append("    " + node(n)) }
            lines.append("  }")
        }
        for n in g.nodes {
            for (k, o) in n.operands.enumerated() {
                lines.append("  n\(o) -> n\(n.id) [label=\"\(k)\"];")
            }
        }
        for (i, o) in g.outputs.enumerated() {
            lines.append("  out\(i) [label=\"output \(escape(o.name))\", shape=ellipse, style=filled, fillcolor=\"#e6f5e6\"];")
            lines.append("  n\(o.node) -> out\(i);")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    static func node(_ n: Node) -> String {
        let shape: String
        var fill = "#ffffff"
        switch n.op.leaf {
        case .input: shape = "ellipse"; fill = "#e6f5e6"
        case .some: shape = "note"; fill = "#fff6dd"
        case nil: shape = "box"; if !n.op.definition.fusedOps.isEmpty { fill = "#cfe0ff" }
        }
        var label = n.op.name + GraphPrinter.attributes(n.op)
        if !n.label.isEmpty { label += "\\n" + escape(n.label) }
        label += "\\n\(n.typeDescription)"
        return "n\(n.id) [label=\"%\(n.id) \(escape(label, keepNewlines: true))\", shape=\(shape), style=filled, fillcolor=\"\(fill)\"];"
    }

    /// Escapes quotes and backslashes (keeping the "\n" line breaks we insert ourselves).
    static func escape(_ s: String, keepNewlines: Bool = false) -> String {
        if keepNewlines {
            return s.components(separatedBy: "\\n").map { escape($0) }.joined(separator: "\\n")
        }
        return s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}
