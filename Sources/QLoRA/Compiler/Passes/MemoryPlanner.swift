/// Pass 5: where every value lives.
/// - Parameters, 4-bit weights, cached f32 weights and state are persistent (owned by storages).
///   A step that updates state (`OpDefinition.updatesOperand`) writes the state's own buffer.
/// - Inputs are read where the caller's tensors are; each output is computed straight into the
///   array `run` returns (no copies in or out).
/// - Intermediates share one arena: each buffer's lifetime is the interval from the step that
///   defines it to its last use; buffers are placed largest first at the best-fitting gap among the
///   buffers whose lifetimes overlap (greedy by size, as XLA and TVM do). A reshape aliases its
///   operand's buffer, and an op that may run in place (`OpDefinition.mayReuseOperand`) takes over
///   its operand's buffer when that operand is dead after the step (as ggml's allocator does).
/// - Kernel scratch is one region after the buffers, sized for the hungriest step (steps run one at a time).
struct MemoryPlan: Sendable {
    struct Buffer: Sendable {
        var node: Int
        var offset: Int
        var bytes: Int
        /// Step time of definition (0 = before the first step) and of last use (inclusive).
        var start: Int
        var end: Int
    }
    var refs: [BufferRef?]
    var buffers: [Buffer]
    var parameters: [ParameterStorage]
    var weights: [QuantizedWeightStorage]
    var cachedWeights: [QuantizedWeightStorage]
    var states: [StateStorage]
    var scratchOffset: Int
    var scratchBytes: Int
    /// Kernel scratch each node's step needs (0 for most).
    var scratchPerNode: [Int]
    /// What the arena buffers would take with no reuse at all (neither shared gaps nor in-place steps).
    var unsharedBytes: Int
    var arenaBytes: Int { scratchOffset + scratchBytes }
    /// Bytes outside the arena: 4-bit weights with statistics, parameters, cached f32 weights, state.
    var persistentBytes: Int {
        weights.reduce(0) { $0 + $1.memoryBytes } + parameters.reduce(0) { $0 + $1.memoryBytes }
            + cachedWeights.reduce(0) { $0 + $1.count * 4 } + states.reduce(0) { $0 + $1.memoryBytes }
    }
}

enum MemoryPlanner {
    static let alignment = 64

    static func aligned(_ bytes: Int) -> Int { (bytes + alignment - 1) / alignment * alignment }

    /// `scratchPerNode`: the kernel scratch each node's step needs (from lowering).
    static func run(_ g: IRGraph, scratchPerNode: [Int]) -> MemoryPlan {
        var refs = [BufferRef?](repeating: nil, count: g.nodes.count)
        var parameters: [ParameterStorage] = [], weights: [QuantizedWeightStorage] = [], cached: [QuantizedWeightStorage] = []
        var states: [StateStorage] = []
        var time = [Int](repeating: 0, count: g.nodes.count)
        var step = 0
        // A storage used by several nodes (a layer called twice) gets one slot.
        func slot<T: AnyObject>(_ object: T, _ list: inout [T]) -> Int {
            if let i = list.firstIndex(where: { $0 === object }) { return i }
            list.append(object)
            return list.count - 1
        }
        for n in g.nodes {
            switch n.op.leaf {
            case let .parameter(p): refs[n.id] = .parameter(slot(p, &parameters))
            case let .quantizedWeight(w): refs[n.id] = .weight(slot(w, &weights))
            case let .cachedWeight(w): refs[n.id] = .cached(slot(w, &cached))
            case let .state(s): refs[n.id] = .state(slot(s, &states))
            case .input: time[n.id] = 0; refs[n.id] = .input(g.inputs.firstIndex { $0.node == n.id }!)
            case nil where n.op.definition.isAlias: time[n.id] = time[n.operands[0]]
            case nil: step += 1; time[n.id] = step
            }
        }
        let endOfPlan = step + 1
        // When each node's value is last read, by a step or (at the end) as an output.
        var lastRead = time
        for n in g.nodes where !n.op.isLeaf {
            for o in n.operands { lastRead[o] = max(lastRead[o], time[n.id]) }
        }
        for o in g.outputs { lastRead[o.node] = endOfPlan }
        // Which buffer each value lives in (its root), and until when each root's buffer is needed.
        // First the fixed aliases (reshapes, state updates) with every read through them; then the
        // in-place steps, each taking over a buffer only if no read of it (direct or through an
        // alias) comes after the step.
        var parent = Array(0..<g.nodes.count)
        func find(_ id: Int) -> Int { parent[id] == id ? id : find(parent[id]) }
        // Where in its root's buffer each value starts (a later result of a multi-result node).
        var offsetInRoot = [Int](repeating: 0, count: g.nodes.count)
        for n in g.nodes where !n.op.isLeaf {
            let d = n.op.definition
            if d.isAlias || d.updatesOperand != nil {
                let source = n.operands[d.updatesOperand ?? 0]
                parent[n.id] = find(source)
                if d.isAlias { offsetInRoot[n.id] = offsetInRoot[source] + g.nodes[source].resultOffsets[d.aliasedResult] }
            }
        }
        var lastUse = time
        for n in g.nodes { lastUse[find(n.id)] = max(lastUse[find(n.id)], lastRead[n.id]) }
        for n in g.nodes where !n.op.isLeaf && parent[n.id] == n.id {
            guard let k = n.op.definition.mayReuseOperand else { continue }
            let r = find(n.operands[k])
            if !g.nodes[r].op.isLeaf, g.nodes[r].extraResults.isEmpty, n.extraResults.isEmpty,
               lastUse[r] == time[n.id], g.nodes[r].type.byteCount == n.type.byteCount {
                parent[n.id] = r
                lastUse[r] = max(lastUse[r], lastUse[n.id])
            }
        }
        let root = g.nodes.map { find($0.id) }
        // The first output naming a computed value owns it: the kernel writes into the returned array
        // (not a node with several results: the array holds only one).
        for (k, o) in g.outputs.enumerated() where refs[root[o.node]] == nil && g.nodes[root[o.node]].extraResults.isEmpty {
            refs[root[o.node]] = .output(k)
        }
        // The arena buffers: computing nodes that are their own root (not aliases) and not outputs.
        var buffers: [MemoryPlan.Buffer] = []
        for n in g.nodes where root[n.id] == n.id && refs[n.id] == nil {
            buffers.append(.init(node: n.id, offset: 0, bytes: n.bufferBytes, start: time[n.id], end: lastUse[n.id]))
        }
        place(&buffers)
        var offsetOf = [Int: Int]()
        for b in buffers { offsetOf[b.node] = b.offset }
        for n in g.nodes where refs[n.id] == nil {
            let r = root[n.id]
            if let off = offsetOf[r] { refs[n.id] = .arena(offset: off + offsetInRoot[n.id], bytes: n.type.byteCount) } else { refs[n.id] = refs[r] }
        }
        let unshared = g.nodes.filter { n in
            if case .arena = refs[n.id]!, !n.op.definition.isAlias, n.op.definition.updatesOperand == nil { return true }
            return false
        }.reduce(0) { $0 + $1.bufferBytes }
        let top = buffers.map { $0.offset + $0.bytes }.max() ?? 0
        let scratch = scratchPerNode.max() ?? 0
        return MemoryPlan(refs: refs, buffers: buffers, parameters: parameters, weights: weights, cachedWeights: cached, states: states,
                          scratchOffset: top, scratchBytes: aligned(scratch), scratchPerNode: scratchPerNode, unsharedBytes: unshared)
    }

    /// Greedy by size with best fit: each buffer goes into the smallest gap (between buffers already
    /// placed whose lifetimes overlap it) that holds it, else on top.
    static func place(_ buffers: inout [MemoryPlan.Buffer]) {
        let order = buffers.indices.sorted { (buffers[$0].bytes, buffers[$1].start) > (buffers[$1].bytes, buffers[$0].start) }
        var placed: [Int] = []
        for i in order {
            let b = buffers[i]
            let conflicts = placed.map { buffers[$0] }
                .filter { $0.start <= b.end && b.start <= $0.end }
                .sorted { $0.offset < $1.offset }
            var best: (offset: Int, gap: Int)?
            var cursor = 0
            for c in conflicts {
                let gap = c.offset - cursor
                if gap >= b.bytes, best == nil || gap < best!.gap { best = (cursor, gap) }
                cursor = max(cursor, c.offset + c.bytes)
            }
            buffers[i].offset = best?.offset ?? cursor
            placed.append(i)
        }
    }
}
