/// Renders the IR as readable text: one node per line with id, op, operands, type and label.
enum GraphPrinter {
    static func text(_ g: IRGraph) -> String {
        var lines: [String] = []
        for n in g.nodes {
            let operands = n.operands.map { "%\($0)" }.joined(separator: ", ")
            var line = "%\(n.id) = \(n.op.name)\(attributes(n.op))(\(operands)) : \(n.typeDescription)"
            if !n.label.isEmpty { line += "  # \(n.label)" }
            lines.append(line)
        }
        for o in g.outputs { lines.append("output \(o.name) = %\(o.node)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Op attributes shown inside brackets, e.g. scale[2.0], fused_qlora_linear[lora, bias, scaling=2.0].
    static func attributes(_ op: Op) -> String { op.definition.bracketAttributes }
}
