/// Renders the IR as readable text: one node per line with id, op, operands, type and label.
enum GraphPrinter {
    static func text(_ g: IRGraph) -> String {
        var lines: [String] = []
        for n in g.nodes {
            let operands = n.operands.map { "%\($0)" }.joined(separator: ", ")
            var line = "%\(n.id) = \(n.op.name)\(attributes(n.op))(\(operands)) : \(n.type)"
            if !n.label.isEmpty { line += "  # \(n.label)" }
            lines.append(line)
        }
        for o in g.outputs { lines.append("output \(o.name) = %\(o.node)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Op attributes shown inside brackets, e.g. scale[2.0], fused_qlora_linear[lora, bias, scaling=2.0].
    static func attributes(_ op: Op) -> String {
        switch op {
        case let .input(name): return "[\(name)]"
        case let .scale(s): return "[\(s)]"
        case let .reshape(shape): return "[\(shape.map(String.init).joined(separator: "x"))]"
        case let .rmsNorm(eps): return "[eps=\(eps)]"
        case let .quantizedWeight(w), let .cachedWeight(w):
            return "[\(w.quantType.rawValue), block \(w.blockSize)\(w.isDoubleQuantized ? ", double-quant" : "")]"
        case let .fusedLinear(a):
            var parts: [String] = []
            if a.hasLora { parts.append("lora, scaling=\(a.scaling)") }
            if a.hasBias { parts.append("bias") }
            return parts.isEmpty ? "" : "[\(parts.joined(separator: ", "))]"
        default: return ""
        }
    }
}
