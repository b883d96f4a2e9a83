import CQLoRAKernels

/// Pass 4b (after mode lowering, so it sees which weights stay 4-bit): the on-the-fly fused
/// linears that read the same x become one `FusedLinearGroupOp` step, which reads x once and
/// forks once. Three rules, tried in this order:
///
///     silu_mul(fused(x, Wg, ...), fused(x, Wu, ...))  → group_silu_mul(x, Wg..., Wu...)   (gate/up)
///     the same, gate and up also read elsewhere        → group_silu_mul[keeps gate/up]     (training gate/up)
///     fused(x, W₁, ...), ..., fused(x, Wₙ, ...)        → group(x, W₁..., ..., Wₙ...)       (q/k/v)
///
/// The first rewrites the silu_mul node (its two linears are used by it alone and die). The
/// others rewrite the first linear into the group (result 0) and each later one into `result[i]`
/// of it (the kept silu·mul product into `result[2]`), so every reader keeps its operand ids. The
/// later members' operands recorded after the first linear move up to just before the group
/// (`hoisting`): weights, LoRA factors and biases (leaves) and, in training plans, the
/// `lora_down` steps of their x·Aᵀ (DownProjectionHandOff), which read x and a leaf only.
/// Backward steps (fusion runs after autodiff) read the members' values through those same ids,
/// so training plans are unchanged in meaning.
enum LinearGroupFusion {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        let uses = g.useCounts()
        // Candidates by their input x, in node order.
        var byInput: [Int: [Int]] = [:]
        for n in g.nodes where isMember(n, in: g) { byInput[n.operands[0], default: []].append(n.id) }
        var grouped = Set<Int>()
        var hoisting: [Int: [Int]] = [:], moving = Set<Int>()

        // gate/up + silu·mul.
        for n in g.nodes {
            guard let mul = n.op.as(MulOp.self), mul.siluGate, n.operands.count == 2 else { continue }
            let (gate, up) = (n.operands[0], n.operands[1])
            guard gate != up, !grouped.contains(gate), !grouped.contains(up),
                  isMember(g.nodes[gate], in: g), isMember(g.nodes[up], in: g),
                  g.nodes[gate].operands[0] == g.nodes[up].operands[0], g.nodes[gate].type == g.nodes[up].type else { continue }
            let members = [gate, up]
            if uses[gate] == 1, uses[up] == 1 {
                // Only the product is read: it is the step's one result.
                g.nodes[n.id].op = Op(FusedLinearGroupOp(members: members.map { attributes(g.nodes[$0]) }, siluMul: true))
                g.nodes[n.id].operands = [g.nodes[gate].operands[0]] + members.flatMap { g.nodes[$0].operands.dropFirst() }
                grouped.formUnion(members)
                continue
            }
            // gate and up are read elsewhere too (the backward's silu_mul_grad): results gate, up, product.
            guard gate < up, let moves = movable(Array(g.nodes[up].operands.dropFirst()), after: gate, in: g, moving: moving) else { continue }
            let x = g.nodes[gate].operands[0], type = g.nodes[gate].type
            g.nodes[gate].op = Op(FusedLinearGroupOp(members: members.map { attributes(g.nodes[$0]) }, siluMul: true, keepsMembers: true))
            g.nodes[gate].operands = [x] + members.flatMap { g.nodes[$0].operands.dropFirst() }
            g.nodes[gate].extraResults = [type, type]
            for (id, index) in [(up, 1), (n.id, 2)] {
                g.nodes[id].op = Op(ResultOp(index: index))
                g.nodes[id].operands = [gate]
            }
            hoisting[gate] = moves
            moving.formUnion(moves)
            grouped.formUnion(members)
        }

        // Siblings of one x (q/k/v), up to the kernel's group size.
        for x in byInput.keys.sorted() {
            let free = byInput[x]!.filter { !grouped.contains($0) }
            for start in stride(from: 0, to: free.count, by: Int(CQ_LINEAR_GROUP_MAX)) {
                let members = Array(free[start..<min(start + Int(CQ_LINEAR_GROUP_MAX), free.count)])
                guard members.count >= 2, let first = members.first,
                      let moves = movable(members.dropFirst().flatMap { g.nodes[$0].operands.dropFirst() }, after: first, in: g, moving: moving)
                else { continue }
                let operands = [x] + members.flatMap { g.nodes[$0].operands.dropFirst() }
                let types = members.map { g.nodes[$0].type }
                g.nodes[first].op = Op(FusedLinearGroupOp(members: members.map { attributes(g.nodes[$0]) }, siluMul: false))
                g.nodes[first].operands = operands
                g.nodes[first].extraResults = Array(types.dropFirst())
                for (i, id) in members.enumerated().dropFirst() {
                    g.nodes[id].op = Op(ResultOp(index: i))
                    g.nodes[id].operands = [first]
                }
                hoisting[first] = moves
                moving.formUnion(moves)
                grouped.formUnion(members)
            }
        }
        return hoisting.isEmpty ? g : hoisted(g, hoisting)
    }

    /// An on-the-fly fused linear with a 4-bit weight and one result (x·Aᵀ computed or given).
    static func isMember(_ n: Node, in g: IRGraph) -> Bool {
        guard n.op.is(FusedLinearOp.self), n.extraResults.isEmpty, n.operands.count >= 2 else { return false }
        return g.nodes[n.operands[1]].type.element == .quant4
    }

    static func attributes(_ n: Node) -> FusedLinearAttributes { n.op.as(FusedLinearOp.self)!.attributes }

    /// The nodes after `first` that `operands` need, in id order, when all of them can move up to
    /// just before `first`: leaves, and `lora_down` steps whose own operands are before `first` or
    /// move too (nil otherwise: a computed operand keeps the group apart). Nodes already moving
    /// for another group are left where that group puts them.
    private static func movable(_ operands: [Int], after first: Int, in g: IRGraph, moving: Set<Int>) -> [Int]? {
        var found = Set<Int>()
        var stack = operands.filter { $0 > first }
        while let id = stack.popLast() {
            guard !moving.contains(id), found.insert(id).inserted else { continue }
            let n = g.nodes[id]
            if n.op.isLeaf { continue }
            guard n.op.is(LoraDownOp.self) else { return nil }
            stack += n.operands.filter { $0 > first }
        }
        return found.sorted()
    }

    /// The graph with `moves[group]`'s nodes placed just before `group`, ids renumbered.
    private static func hoisted(_ g: IRGraph, _ moves: [Int: [Int]]) -> IRGraph {
        let moving = Set(moves.values.joined())
        var order: [Int] = []
        order.reserveCapacity(g.nodes.count)
        for id in g.nodes.indices {
            if let nodes = moves[id] { order += nodes }
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
