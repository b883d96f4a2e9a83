/// Which segments a training plan recomputes (`Checkpointing`): all of them with
/// `CompileOptions.gradientCheckpointing`; under `memoryBudget`, the fewest that bring the planned
/// peak (arena + persistent) within the budget, taking candidates in order of the bytes they keep
/// (largest first, then forward order) — the smallest such prefix, found by bisection over fully
/// built plans, so the number compared with the budget is the memory plan's own.
enum CheckpointSelection {
    /// `plain` is the graph keeping everything; `build` plans it with the given segments recomputed.
    static func choose(_ g: IRGraph, plain: PlannedGraph, options: CompileOptions,
                       build: ([Checkpointing.Segment]) throws -> PlannedGraph) throws -> (PlannedGraph, CheckpointingReport) {
        let segments = Checkpointing.segments(g)
        let order = segments.filter(\.isCandidate).sorted { ($0.savedBytes, $1.index) > ($1.savedBytes, $0.index) }
        var built: [Int: PlannedGraph] = [0: plain]
        func plan(_ k: Int) throws -> PlannedGraph {
            if let p = built[k] { return p }
            let p = try build(Array(order.prefix(k)))
            built[k] = p
            return p
        }
        func result(_ k: Int) throws -> (PlannedGraph, CheckpointingReport) {
            (try plan(k), report(g, segments, chosen: Set(order.prefix(k).map(\.index)), options: options, peakWithout: plain.peakBytes))
        }
        let all = order.count
        guard let budget = options.memoryBudget else { return try result(all) }
        let least = try plan(all)
        if least.peakBytes > budget {
            let minimum = min(least.peakBytes, plain.peakBytes)
            throw QLoraError.invalidArgument(
                "memory budget \(ExecutablePlan.bytes(budget)) (\(budget) bytes) is below what this training plan can reach: "
                + "its smallest planned peak (arena + persistent, \(all) of \(segments.count) segments recomputed) is "
                + "\(ExecutablePlan.bytes(minimum)) (\(minimum) bytes); give a budget of at least \(minimum) bytes")
        }
        if options.gradientCheckpointing || plain.peakBytes <= budget { return try result(options.gradientCheckpointing ? all : 0) }
        // Bisection: plan(lo) exceeds the budget, plan(hi) fits.
        var lo = 0, hi = all
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if try plan(mid).peakBytes <= budget { hi = mid } else { lo = mid }
        }
        return try result(hi)
    }

    static func report(_ g: IRGraph, _ segments: [Checkpointing.Segment], chosen: Set<Int>, options: CompileOptions,
                       peakWithout: Int) -> CheckpointingReport {
        func label(_ id: Int) -> String { g.nodes[id].label.isEmpty ? "%\(id) \(g.nodes[id].op.name)" : g.nodes[id].label }
        return CheckpointingReport(
            segments: segments.map { s in
                .init(index: s.index, first: label(s.nodes[0]), boundary: s.boundary.map(label) ?? "(end of the forward)", steps: s.nodes.count,
                      savedValues: s.saved.count, savedBytes: s.savedBytes, recomputedSteps: chosen.contains(s.index) ? s.recompute.count : 0,
                      recomputed: chosen.contains(s.index), candidate: s.isCandidate)
            },
            budget: options.memoryBudget, everySegment: options.gradientCheckpointing, peakWithoutBytes: peakWithout)
    }
}

/// What gradient checkpointing did to a training plan, for `qlora inspect` and the plan summary.
public struct CheckpointingReport: Sendable, Equatable {
    public struct Segment: Sendable, Equatable {
        public var index: Int
        /// The label of the segment's first step and of the kept value that closes it.
        public var first: String
        public var boundary: String
        /// Forward steps in the segment.
        public var steps: Int
        /// Values of the segment the backward reads, and the bytes keeping them costs.
        public var savedValues: Int
        public var savedBytes: Int
        /// Steps cloned into the backward (0 when the segment's values are kept).
        public var recomputedSteps: Int
        public var recomputed: Bool
        /// False for the last segment (its backward starts right after the forward) and for segments
        /// with a step that updates state: those are always kept.
        public var candidate: Bool
    }

    public var segments: [Segment]
    public var budget: Int?
    /// `CompileOptions.gradientCheckpointing`: every segment recomputed.
    public var everySegment: Bool
    /// The planned peak (arena + persistent) of the same plan keeping every activation.
    public var peakWithoutBytes: Int

    public var recomputedSegments: Int { segments.filter(\.recomputed).count }
    public var recomputedSteps: Int { segments.reduce(0) { $0 + $1.recomputedSteps } }

    /// One line per segment: kept or recomputed, with its size.
    func lines(peak: Int) -> [String] {
        var out = ["checkpointing: \(recomputedSegments) of \(segments.count) segments recomputed (\(recomputedSteps) steps); planned peak "
                   + "\(ExecutablePlan.bytes(peak)), without recomputation \(ExecutablePlan.bytes(peakWithoutBytes))"
                   + (budget.map { ", budget \(ExecutablePlan.bytes($0))" } ?? "") + (everySegment ? " (every segment asked)" : "")]
        for s in segments {
            let what = s.recomputed ? "recomputed (\(s.recomputedSteps) steps)" : s.candidate ? "kept" : "kept (never recomputed)"
            out.append("  segment \(s.index): \(s.first) … → \(s.boundary): \(s.steps) steps, backward reads \(s.savedValues) values "
                       + "(\(ExecutablePlan.bytes(s.savedBytes))): \(what)")
        }
        return out
    }
}
