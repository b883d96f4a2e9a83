/// Gradient checkpointing (optional, after fusion and mode lowering): forward values the backward
/// reads are recomputed right before their first backward use instead of being kept from the
/// forward pass, one segment at a time, so the memory plan frees them after the forward.
///
/// Segments are found, not declared: a *cut* is a forward value such that no earlier computed
/// value is read by a later forward step — the whole activation stream passes through it (in a
/// Llama model, each residual add: two per decoder layer; in a residual MLP, each block's sum).
/// A segment is the forward steps between two cuts; its closing cut is kept (the next segment's
/// input). Checkpointing a segment clones the steps that compute the values its backward reads
/// (with their dependencies inside the segment) from its kept inputs — the previous cut,
/// parameters, weights, inputs — and points the backward at the clones. The clones are the same
/// fused ops with the same kernels and operands, so the recomputed values are bitwise the kept
/// ones. The last segment the backward reads from is never a candidate: its backward starts right
/// after the forward.
enum Checkpointing {
    struct Segment: Sendable, Equatable {
        /// Position among the graph's segments (forward order).
        var index: Int
        /// Forward computing steps in the segment (its closing cut excluded), in order.
        var nodes: [Int]
        /// The kept value that closes the segment (nil for the last segment).
        var boundary: Int?
        /// Values of the segment the backward reads.
        var saved: [Int]
        /// What to recompute: `saved` and their dependencies inside the segment, in order.
        var recompute: [Int]
        /// Bytes of the buffers behind `saved` (what keeping them costs between forward and backward).
        var savedBytes: Int
        /// Whether recomputing it can lower the peak (not the last segment, nothing with side effects).
        var isCandidate: Bool
    }

    /// The segments of a graph after autodiff (`forwardCount` set), in forward order.
    static func segments(_ g: IRGraph) -> [Segment] {
        guard let forward = g.forwardCount else { return [] }
        let nodes = g.nodes
        // The last forward step reading each value.
        var lastForwardRead = [Int](repeating: -1, count: nodes.count)
        for n in nodes[..<forward] where !n.op.isLeaf { for o in n.operands { lastForwardRead[o] = max(lastForwardRead[o], n.id) } }
        var backwardReaders = [Bool](repeating: false, count: nodes.count)
        for n in nodes[forward...] { for o in n.operands where o < forward { backwardReaders[o] = true } }

        var segments: [Segment] = []
        var current: [Int] = []
        var reach = -1   // the furthest forward read of any computed value so far
        func close(_ boundary: Int?) {
            guard !current.isEmpty else { return }
            segments.append(segment(index: segments.count, nodes: current, boundary: boundary, g, backwardReaders))
            current = []
        }
        for n in nodes[..<forward] where !n.op.isLeaf {
            let d = n.op.definition
            if reach <= n.id, !d.isAlias, n.extraResults.isEmpty, d.updatesOperand == nil, !current.isEmpty {
                close(n.id)
            } else {
                current.append(n.id)
            }
            reach = max(reach, lastForwardRead[n.id])
        }
        close(nil)
        // The last segment the backward reads from is never recomputed: its backward starts right
        // after the loss, so keeping its values costs (almost) nothing; later ones have nothing to recompute.
        if let last = segments.lastIndex(where: { !$0.saved.isEmpty }) {
            for i in last..<segments.count { segments[i].isCandidate = false }
        }
        return segments
    }

    private static func segment(index: Int, nodes members: [Int], boundary: Int?, _ g: IRGraph, _ backwardReaders: [Bool]) -> Segment {
        let inside = Set(members)
        let saved = members.filter { backwardReaders[$0] }
        var needed = Set<Int>(), stack = saved
        while let id = stack.popLast() {
            guard needed.insert(id).inserted else { continue }
            stack += g.nodes[id].operands.filter { inside.contains($0) }
        }
        let recompute = members.filter { needed.contains($0) }
        // A value read through an alias costs its producer's buffer (counted once).
        var roots = Set<Int>()
        for var id in saved {
            while g.nodes[id].op.definition.isAlias, inside.contains(g.nodes[id].operands[0]) { id = g.nodes[id].operands[0] }
            roots.insert(id)
        }
        let bytes = roots.reduce(0) { $0 + (g.nodes[$1].op.definition.isAlias ? 0 : g.nodes[$1].bufferBytes) }
        let pure = recompute.allSatisfy { g.nodes[$0].op.definition.updatesOperand == nil }
        return Segment(index: index, nodes: members, boundary: boundary, saved: saved, recompute: recompute, savedBytes: bytes,
                       isCandidate: boundary != nil && pure && !saved.isEmpty)
    }

    /// `g` with the backward of each segment in `chosen` reading recomputed clones of its values.
    static func rewrite(_ g: IRGraph, recomputing chosen: [Segment]) -> IRGraph {
        guard let forward = g.forwardCount, !chosen.isEmpty else { return g }
        // Where each segment's recomputation goes: before the first backward step reading it.
        var insertAt: [Int: [Segment]] = [:]
        for s in chosen {
            let readSet = Set(s.recompute)
            guard let first = g.nodes[forward...].first(where: { $0.operands.contains { readSet.contains($0) } })?.id else { continue }
            insertAt[first, default: []].append(s)
        }
        var out = IRGraph()
        out.inputs = g.inputs
        var remap = [Int](repeating: -1, count: g.nodes.count)
        var clone: [Int: Int] = [:]   // forward value → its recomputed copy
        for n in g.nodes {
            if n.id == forward { out.forwardCount = out.nodes.count }
            for s in insertAt[n.id] ?? [] {
                for id in s.recompute {
                    var copy = g.nodes[id]
                    copy.id = out.nodes.count
                    copy.operands = copy.operands.map { clone[$0] ?? remap[$0] }
                    copy.label = copy.label.isEmpty ? "recompute" : "\(copy.label).recompute"
                    clone[id] = copy.id
                    out.nodes.append(copy)
                }
            }
            var copy = n
            copy.id = out.nodes.count
            copy.operands = n.operands.map { n.id >= forward ? (clone[$0] ?? remap[$0]) : remap[$0] }
            remap[n.id] = copy.id
            out.nodes.append(copy)
        }
        out.inputs = g.inputs.map { ($0.name, remap[$0.node]) }
        out.outputs = g.outputs.map { ($0.name, remap[$0.node]) }
        if out.forwardCount == nil { out.forwardCount = out.nodes.count }
        return out
    }
}
