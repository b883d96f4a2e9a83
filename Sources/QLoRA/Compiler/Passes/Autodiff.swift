import Foundation

/// Pass 1b (before dead code and fusion): reverse-mode differentiation of the recorded graph.
///
/// From the scalar loss named by the graph's `BackwardRequest`, walks the nodes backwards and
/// asks each node's definition for its vector-Jacobian product (`OpDefinition.vjp`), which records
/// the backward steps as ordinary nodes. Cotangents reaching a node from several uses are summed
/// with `add`. Only nodes that depend on a trainable parameter or a requested input and lead to
/// the loss are differentiated; the frozen 4-bit weight gets no gradient (matmul's vjp multiplies
/// by it through the on-the-fly kernel). Then, per request:
/// - each trainable parameter's gradient is assigned to its `ParameterStore` gradient slice;
/// - each requested input gradient becomes a graph output;
/// - an optimizer step over the flat parameter buffer runs last, after every gradient is written.
/// The result is one graph (forward, backward, update) that fusion and planning treat like any other.
enum Autodiff {
    static func run(_ recorded: IRGraph) throws -> IRGraph {
        guard let request = recorded.backward else { return recorded }
        var g = recorded
        g.backward = nil
        g.forwardCount = recorded.nodes.count
        let loss = request.loss
        guard loss >= 0, loss < g.nodes.count, g.nodes[loss].type.count == 1, g.nodes[loss].type.element == .float32 else {
            throw QLoraError.invalidArgument("backward: the loss must be one f32 value")
        }
        // Differentiation targets: trainable parameter leaves held by the store, requested inputs.
        let stored = request.parameters?.parameters ?? []
        var parameterNodes: [(node: Int, slot: Int)] = []
        for n in g.nodes {
            if case let .parameter(p)? = n.op.leaf, let slot = stored.firstIndex(where: { $0 === p }) { parameterNodes.append((n.id, slot)) }
        }
        let targets = Set(parameterNodes.map(\.node) + request.inputGradients.map(\.node))
        // Active: depends on a target (forward) and leads to the loss (backward).
        var depends = [Bool](repeating: false, count: g.nodes.count)
        for n in g.nodes { depends[n.id] = targets.contains(n.id) || n.operands.contains { depends[$0] } }
        var leads = [Bool](repeating: false, count: g.nodes.count)
        leads[loss] = true
        for n in g.nodes[...loss].reversed() where leads[n.id] { for o in n.operands { leads[o] = true } }
        let active = zip(depends, leads).map { $0 && $1 }

        var d = Differentiator(graph: g, active: active)
        var contributions: [Int: [Int]] = [:]
        contributions[loss] = [try d.emit(Op(FillOp(value: 1, shape: g.nodes[loss].type.shape)), [], label: "grad.seed")]
        // Cotangents of a node's results after the first (read through `result` nodes), by producer.
        var extraCotangents: [Int: [Int: Int]] = [:]
        // Parameter gradients into the store's slices (several leaves of one parameter add up). A
        // parameter's gradient is complete once the walk reaches its first leaf (every reader has
        // a larger id), so its assignment is emitted there: the steps then write each gradient
        // slice as soon as it is final, last layer first, and a data-parallel trainer can reduce
        // it while the rest of the backward runs (`GradientBuckets`).
        var assigns: [Int] = []
        var assigned = Set<Int>()
        var firstLeaf: [Int: Int] = [:], seenSlots = Set<Int>()  // node id → slot, for the smallest leaf id of each slot
        for (node, slot) in parameterNodes where seenSlots.insert(slot).inserted { firstLeaf[node] = slot }
        func assign(_ slot: Int) throws {
            guard let store = request.parameters, assigned.insert(slot).inserted else { return }
            let p = store.parameters[slot]
            let parts = parameterNodes.filter { $0.slot == slot }.flatMap { contributions[$0.node] ?? [] }
            let grad = parts.isEmpty ? try d.emit(Op(FillOp(value: 0, shape: p.shape)), [], label: "\(p.name).grad")
                                     : try d.sum(parts, label: "\(p.name).grad")
            let state = d.leaf(Op(StateOp(storage: store.gradients[slot])), shape: p.shape, label: "\(p.name).grad")
            // Each assignment names the previous one as an ordering operand (the optimizer then needs only the last).
            assigns.append(try d.emit(Op(AssignOp()), [state, grad] + assigns.suffix(1), label: "\(p.name).grad"))
        }
        for id in stride(from: loss, through: 0, by: -1) where active[id] {
            if let slot = firstLeaf[id] { try assign(slot) }
            let node = d.graph.nodes[id]
            if let r = node.op.as(ResultOp.self) {
                if let parts = contributions[id] { extraCotangents[node.operands[0], default: [:]][r.index] = try d.sum(parts, label: "grad.\(node.label)") }
                continue
            }
            let extras = extraCotangents[id] ?? [:]
            guard !node.op.isLeaf, contributions[id] != nil || !extras.isEmpty else { continue }
            let cotangent = try contributions[id].map { try d.sum($0, label: "grad.\(node.label)") }
                ?? d.emit(Op(FillOp(value: 0, shape: node.type.shape)), [], label: "grad.\(node.label)")
            d.resultCotangents = [nil] + (0..<node.extraResults.count).map { extras[$0 + 1] }
            let grads = try node.op.definition.vjp(node, cotangent: cotangent, into: &d)
            d.resultCotangents = [nil]
            for (k, grad) in grads.enumerated() {
                guard let grad, active[node.operands[k]] else { continue }
                contributions[node.operands[k], default: []].append(grad)
            }
        }
        // The parameters no gradient reaches (zeros), in slot order.
        for slot in (request.parameters?.parameters ?? []).indices { try assign(slot) }
        var outputs: [(name: String, node: Int)] = []
        for (name, node) in request.inputGradients {
            let parts = contributions[node] ?? []
            outputs.append((name, parts.isEmpty ? try d.emit(Op(FillOp(value: 0, shape: g.nodes[node].type.shape)), [], label: name)
                                                : try d.sum(parts, label: name)))
        }
        if let optimizer = request.optimizer, let store = request.parameters {
            let flat = [store.flatParameterState, store.flatGradientState] + optimizer.states
            let leaves = flat.map { d.leaf(Op(StateOp(storage: $0)), shape: $0.shape, label: $0.name) }
            // The last gradient assignment is a trailing operand: the step runs after all of them.
            try d.emit(Op(OptimizerStepOp(method: optimizer.method, count: max(store.count, 1))), leaves + assigns.suffix(1), label: "optimizer")
        }
        var out = d.graph
        out.outputs += outputs
        return out
    }
}

/// What `Graph.backward` asks the autodiff pass for.
struct BackwardRequest: @unchecked Sendable {
    var loss: Int
    var parameters: ParameterStore?
    var inputGradients: [(name: String, node: Int)]
    var optimizer: Optimizer?
}

/// The graph being extended with backward steps, as a definition's `vjp` sees it.
struct Differentiator {
    var graph: IRGraph
    /// Per forward node: whether a gradient must flow to it.
    let active: [Bool]
    /// While a vjp runs: the cotangents of the node's results after the first (index k for result
    /// k, nil where none flows; index 0 is unused: that one is the `cotangent` argument).
    var resultCotangents: [Int?] = [nil]

    /// The cotangent of result k (k ≥ 1) of the node whose vjp runs, if one flows.
    func resultCotangent(_ k: Int) -> Int? { k < resultCotangents.count ? resultCotangents[k] : nil }

    /// Whether operand `k` of `node` needs a gradient.
    func wants(_ node: Node, _ k: Int) -> Bool { active[node.operands[k]] }

    func type(_ id: Int) -> ValueType { graph.nodes[id].type }

    /// Records `op` over `operands` (type rule checked) and returns its id.
    @discardableResult
    mutating func emit(_ op: Op, _ operands: [Int], label: String = "") throws -> Int {
        // "grad.\(label)" of an unlabelled node reads "grad".
        var label = label
        while label.contains("..") { label = label.replacingOccurrences(of: "..", with: ".") }
        if label.hasSuffix(".") { label.removeLast() }
        let (type, extras) = try op.resultTypes(operands.map { graph.nodes[$0].type },
                                                operandExtras: operands.map { graph.nodes[$0].extraResults }, label: label)
        let id = graph.nodes.count
        graph.nodes.append(Node(id: id, op: op, operands: operands, type: type, label: label, extraResults: extras))
        return id
    }

    mutating func leaf(_ op: Op, shape: [Int], label: String) -> Int {
        let id = graph.nodes.count
        graph.nodes.append(Node(id: id, op: op, operands: [], type: ValueType(shape: shape, element: .float32), label: label))
        return id
    }

    /// The sum of `parts`, added left to right.
    mutating func sum(_ parts: [Int], label: String) throws -> Int {
        var total = parts[0]
        for p in parts.dropFirst() { total = try emit(.add, [total, p], label: label) }
        return total
    }

    /// `value` seen with `shape` (a reshape only when the shapes differ).
    mutating func reshaped(_ value: Int, to shape: [Int], label: String) throws -> Int {
        type(value).shape == shape ? value : try emit(.reshape(shape), [value], label: label)
    }
}

extension Graph {
    /// Asks `compile` to add the backward pass from `loss` (one value, e.g. `mseLoss`) and,
    /// optionally, an optimizer step, so one plan runs a whole training step:
    /// - every trainable parameter of `parameters` gets ∂loss/∂parameter written into its
    ///   gradient slice (`ParameterStore.gradients`, overwritten on every run);
    /// - `inputGradients` maps an output name to an input (or any value) whose gradient the plan
    ///   returns under that name (so layers stack);
    /// - `optimizer` (over the same store) then updates the flat parameter buffer in place.
    /// Frozen 4-bit weights never get a gradient. One request per graph.
    public func backward(from loss: Value, parameters: ParameterStore? = nil, inputGradients: [String: Value] = [:],
                         optimizer: Optimizer? = nil) throws {
        for v in [loss] + Array(inputGradients.values) where v.graph !== self {
            throw QLoraError.invalidArgument("backward: value %\(v.id) belongs to another graph")
        }
        guard loss.type.count == 1 else { throw QLoraError.invalidArgument("backward: the loss must be one value, got \(loss.type)") }
        let store = parameters ?? optimizer?.parameters
        if let optimizer, optimizer.parameters !== store {
            throw QLoraError.invalidArgument("backward: the optimizer updates another parameter store")
        }
        let request = BackwardRequest(loss: loss.id, parameters: store,
                                      inputGradients: inputGradients.sorted { $0.key < $1.key }.map { ($0.key, $0.value.id) },
                                      optimizer: optimizer)
        try setBackward(request)
    }
}
