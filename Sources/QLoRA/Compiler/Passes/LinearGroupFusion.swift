import CQLoRAKernels

/// Pass 4b (after mode lowering, so it sees which weights stay 4-bit): the on-the-fly fused
/// linears that read the same x become one `FusedLinearGroupOp` step, which reads x once and
/// forks once. Two rules, tried in this order:
///
///     silu_mul(fused(x, Wg, ...), fused(x, Wu, ...))  → group_silu_mul(x, Wg..., Wu...)   (gate/up)
///     fused(x, W₁, ...), ..., fused(x, Wₙ, ...)        → group(x, W₁..., ..., Wₙ...)       (q/k/v)
///
/// The SwiGLU rule rewrites the silu_mul node (its two linears are used by it alone and die).
/// The sibling rule rewrites the first linear into the group (result 0) and each later one into
/// `result[i]` of it; the later members' weights, LoRA factors and biases are leaves recorded
/// after the first linear, so they move up to just before the group (`hoisting`), keeping every
/// operand ahead of its user. Backward steps (fusion runs after autodiff) read the members'
/// values through those same ids, so training plans are unchanged in meaning.
enum LinearGroupFusion {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        let uses = g.useCounts()
        // Candidates by their input x, in node order.
        var byInput: [Int: [Int]] = [:]
        for n in g.nodes where isMember(n, in: g) { byInput[n.operands[0], default: []].append(n.id) }
        var grouped = Set<Int>()

        // gate/up + silu·mul: both linears used only by the product.
        for n in g.nodes {
            guard let mul = n.op.as(MulOp.self), mul.siluGate, n.operands.count == 2 else { continue }
            let (gate, up) = (n.operands[0], n.operands[1])
            guard gate != up, !grouped.contains(gate), !grouped.contains(up), uses[gate] == 1, uses[up] == 1,
                  isMember(g.nodes[gate], in: g), isMember(g.nodes[up], in: g),
                  g.nodes[gate].operands[0] == g.nodes[up].operands[0], g.nodes[gate].type == g.nodes[up].type else { continue }
            let members = [gate, up]
            g.nodes[n.id].op = Op(FusedLinearGroupOp(members: members.map { attributes(g.nodes[$0]) }, siluMul: true))
            g.nodes[n.id].operands = [g.nodes[gate].operands[0]] + members.flatMap { g.nodes[$0].operands.dropFirst() }
            grouped.formUnion(members)
        }

        // Siblings of one x (q/k/v), up to the kernel's group size.
        var hoisting: [Int: [Int]] = [:], moving = Set<Int>()
        for x in byInput.keys.sorted() {
            let free = byInput[x]!.filter { !grouped.contains($0) }
            for start in stride(from: 0, to: free.count, by: Int(CQ_LINEAR_GROUP_MAX)) {
                let members = Array(free[start..<min(start + Int(CQ_LINEAR_GROUP_MAX), free.count)])
                guard members.count >= 2, let first = members.first else { continue }
                let later = members.dropFirst().flatMap { g.nodes[$0].operands.dropFirst() }.filter { $0 > first && !moving.contains($0) }
                // Only leaves can move up; a computed operand after the first member keeps the group apart.
                guard later.allSatisfy({ g.nodes[$0].op.isLeaf }) else { continue }
                let operands = [x] + members.flatMap { g.nodes[$0].operands.dropFirst() }
                let types = members.map { g.nodes[$0].type }
                g.nodes[first].op = Op(FusedLinearGroupOp(members: members.map { attributes(g.nodes[$0]) }, siluMul: false))
                g.nodes[first].operands = operands
                g.nodes[first].extraResults = Array(types.dropFirst())
                for (i, id) in members.enumerated().dropFirst() {
                    g.nodes[id].op = Op(ResultOp(index: i))
                    g.nodes[id].operands = [first]
                }
                hoisting[first] = Array(Set(later)).sorted()
                moving.formUnion(later)
                grouped.formUnion(members)
            }
        }
        return hoisting.isEmpty ? g : hoisted(g, hoisting)
    }

    /// An on-the-fly fused linear with a 4-bit weight and one result. A training linear whose
    /// x·Aᵀ is handed in (DownProjectionHandOff: operand 2 is x·Aᵀ, not A) stays apart.
    private static func isMember(_ n: Node, in g: IRGraph) -> Bool {
        guard let f = n.op.as(FusedLinearOp.self), !f.attributes.takesDownProjection,
              n.extraResults.isEmpty, n.operands.count >= 2 else { return false }
        return g.nodes[n.operands[1]].type.element == .quant4
    }

    private static func attributes(_ n: Node) -> FusedLinearAttributes { n.op.as(FusedLinearOp.self)!.attributes }

    /// The graph with `moves[group]`'s leaves placed just before `group`, ids renumbered.
    private static func hoisted(_ g: IRGraph, _ moves: [Int: [Int]]) -> IRGraph {
        let moving = Set(moves.values.joined())
        var order: [Int] = []
        order.reserveCapacity(g.nodes.count)
        for id in g.nodes.indices {
            if let leaves = moves[id] { order += leaves }
            if !moving.contains(id) { order.append(id) }
        }
        var remap = [Int](repeating: -1, count: g.nodes.count)
        for (new, old) in order.enumerated() { remap[old] = new }
        var out = g
        out.nodes = order.enumerated().map { new, old in
            var n = g.nodes[old]
            n.id = new
            n.operands = n.operands.map { remap[$0] }
            return n
        }
        out.inputs = g.inputs.map { ($0.name, remap[$0.node]) }
        out.outputs = g.outputs.map { ($0.name, remap[$0.node]) }
        return out
    }
}
