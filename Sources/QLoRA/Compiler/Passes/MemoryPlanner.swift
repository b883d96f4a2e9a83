/// Pass 5: where every value lives.
/// - Parameters, 4-bit weights and cached f32 weights are persistent (owned by storages).
/// - Inputs are read where the caller's tensors are; each output is computed straight into the
///   array `run` returns (no copies in or out).
/// - Intermediates share one arena: each buffer's lifetime is the interval from the step that
///   defines it to its last use; buffers are placed largest first at the best-fitting gap among the
///   buffers whose lifetimes overlap (greedy by size, as XLA and TVM do). A reshape aliases its
///   operand's buffer.
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
    var scratchOffset: Int
    var scratchBytes: Int
    /// Kernel scratch each node's step needs (0 for most).
    var scratchPerNode: [Int]
    var arenaBytes: Int { scratchOffset + scratchBytes }
}

enum MemoryPlanner {
    static let alignment = 64

    /// `scratchPerNode`: the kernel scratch each node's step needs (from lowering).
    static func run(_ g: IRGraph, scratchPerNode: [Int]) -> MemoryPlan {
        var refs = [BufferRef?](repeating: nil, count: g.nodes.count)
        var root = Array(0..<g.nodes.count)           // alias root of each node (reshape → operand)
        var parameters: [ParameterStorage] = [], weights: [QuantizedWeightStorage] = [], cached: [QuantizedWeightStorage] = []
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
            case .input: time[n.id] = 0; refs[n.id] = .input(g.inputs.firstIndex { $0.node == n.id }!)
            case nil where n.op.definition.isAlias: root[n.id] = root[n.operands[0]]; time[n.id] = time[n.operands[0]]
            case nil: step += 1; time[n.id] = step
            }
        }
        let endOfPlan = step + 1
        // Last use of every alias root.
        var lastUse = time
        for n in g.nodes where !n.op.isLeaf {
            for o in n.operands { lastUse[root[o]] = max(lastUse[root[o]], time[n.id]) }
        }
        for o in g.outputs { lastUse[root[o.node]] = endOfPlan }
        // The first output naming a computed value owns it: the kernel writes into the returned array.
        for (k, o) in g.outputs.enumerated() where refs[root[o.node]] == nil {
            refs[root[o.node]] = .output(k)
        }
        // The arena buffers: computing nodes that are their own root (not reshapes) and not outputs.
        var buffers: [MemoryPlan.Buffer] = []
        for n in g.nodes where root[n.id] == n.id && refs[n.id] == nil {
            let bytes = (n.type.byteCount + alignment - 1) / alignment * alignment
            buffers.append(.init(node: n.id, offset: 0, bytes: bytes, start: time[n.id], end: lastUse[n.id]))
        }
        place(&buffers)
        var offsetOf = [Int: Int]()
        for b in buffers { offsetOf[b.node] = b.offset }
        for n in g.nodes where refs[n.id] == nil {
            let r = root[n.id]
            if let off = offsetOf[r] { refs[n.id] = .arena(offset: off, bytes: n.type.byteCount) } else { refs[n.id] = refs[r] }
        }
        let top = buffers.map { $0.offset + $0.bytes }.max() ?? 0
        let scratch = scratchPerNode.max() ?? 0
        return MemoryPlan(refs: refs, buffers: buffers, parameters: parameters, weights: weights, cachedWeights: cached,
                          scratchOffset: top, scratchBytes: (scratch + alignment - 1) / alignment * alignment,
                          scratchPerNode: scratchPerNode)
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
