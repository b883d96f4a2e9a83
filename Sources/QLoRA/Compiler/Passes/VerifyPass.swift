/// Pass 1: the graph is well formed: operands point to earlier nodes (so it is acyclic), every
/// stored type is what shape inference says, inputs and outputs are named uniquely and exist.
enum VerifyPass {
    static func run(_ g: IRGraph) throws {
        guard !g.outputs.isEmpty else { throw QLoraError.invalidArgument("graph has no outputs") }
        var inputNames = Set<String>()
        for (name, id) in g.inputs {
            guard !name.isEmpty else { throw QLoraError.invalidArgument("graph input %\(id) has an empty name") }
            guard inputNames.insert(name).inserted else { throw QLoraError.invalidArgument("graph input '\(name)' is declared twice") }
        }
        var outputNames = Set<String>()
        for (name, id) in g.outputs {
            guard outputNames.insert(name).inserted else { throw QLoraError.invalidArgument("graph output '\(name)' is declared twice") }
            guard id >= 0, id < g.nodes.count else { throw QLoraError.invalidArgument("graph output '\(name)' names missing node %\(id)") }
            switch g.nodes[id].type.element {
            case .float32: break
            case .quant4: throw QLoraError.invalidArgument("graph output '\(name)' is a 4-bit weight; dequantize it first")
            default: throw QLoraError.invalidArgument("graph output '\(name)' is \(g.nodes[id].type); outputs are f32")
            }
        }
        for (index, node) in g.nodes.enumerated() {
            guard node.id == index else { throw QLoraError.invalidArgument("node %\(node.id) is stored at position \(index)") }
            for o in node.operands where o < 0 || o >= index {
                throw QLoraError.invalidArgument("node %\(index) (\(node.op.name)) uses %\(o), which is not an earlier node")
            }
            if case .input = node.op.leaf {
                guard [.float32, .int32].contains(node.type.element) else {
                    throw QLoraError.invalidArgument("input '\(node.label)' is \(node.type); inputs are f32 or int32")
                }
                // Symbolic dimensions pass here (printers show symbolic graphs); compile binds them first.
                guard !node.type.shape.isEmpty, node.type.shape.allSatisfy({ $0 > 0 || SymbolicDimension.name(of: $0) != nil }) else {
                    throw QLoraError.invalidArgument("input '\(node.label)' has shape \(node.type.shape); every dimension must be > 0")
                }
            }
            guard !node.op.isLeaf else { continue }
            guard node.operands.count <= ExecutionContext.maxOperands else {
                throw QLoraError.invalidArgument("node %\(index) (\(node.op.name)) has \(node.operands.count) operands; a step takes at most \(ExecutionContext.maxOperands)")
            }
            if let k = node.op.definition.updatesOperand {
                try checkStateUpdate(g, node, state: node.operands[k])
            }
            let (inferred, extras) = try node.op.resultTypes(node.operands.map { g.nodes[$0].type },
                                                             operandExtras: node.operands.map { g.nodes[$0].extraResults }, label: node.label)
            guard inferred == node.type, extras == node.extraResults else {
                throw QLoraError.shapeMismatch(context: "node %\(index) (\(node.op.name)) stored type", expected: inferred.shape,
                                               actual: node.type.shape)
            }
        }
    }

    /// An in-place update writes a state leaf, and nothing reads that leaf after it (later steps
    /// read the update's result instead), so no step sees a half-updated value.
    private static func checkStateUpdate(_ g: IRGraph, _ node: Node, state: Int) throws {
        guard case .state = g.nodes[state].op.leaf else {
            throw QLoraError.invalidArgument("node %\(node.id) (\(node.op.name)) updates %\(state), which is not a state")
        }
        for later in g.nodes[(node.id + 1)...] where later.operands.contains(state) {
            throw QLoraError.invalidArgument("node %\(later.id) (\(later.op.name)) reads state %\(state) after %\(node.id) updated it; read the update's result")
        }
        if g.outputs.contains(where: { $0.node == state }) {
            throw QLoraError.invalidArgument("state %\(state) is an output and updated by %\(node.id); output the update's result")
        }
    }
}
