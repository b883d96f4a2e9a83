/// The pass pipeline, top to bottom. Each pass reads the IR and returns a rewritten one; the
/// last two produce the memory plan and the immutable `ExecutablePlan`.
enum Compiler {
    static func compile(_ recorded: IRGraph, options: CompileOptions) throws -> ExecutablePlan {
        guard options.threads >= 1, options.threads <= 1024 else {
            throw QLoraError.invalidArgument("CompileOptions.threads must be in 1...1024, got \(options.threads)")
        }
        if let budget = options.memoryBudget, budget <= 0 {
            throw QLoraError.invalidArgument("CompileOptions.memoryBudget must be > 0 bytes, got \(budget)")
        }
        let (g, decisions) = try optimizeWithDecisions(recorded, options: options)
        let plain = try PlannedGraph(g, options: options)
        guard g.forwardCount != nil, options.gradientCheckpointing || options.memoryBudget.map({ plain.peakBytes > $0 }) == true else {
            return plain.schedule(options: options, decisions: decisions)
        }
        let (chosen, report) = try CheckpointSelection.choose(g, plain: plain, options: options) { segments in
            try PlannedGraph(DeadCodeElimination.run(Checkpointing.rewrite(g, recomputing: segments)), options: options)
        }
        return chosen.schedule(options: options, decisions: decisions, checkpointing: report)
    }

    /// The optimized IR (after fusion and mode lowering), for printers.
    static func optimize(_ recorded: IRGraph, options: CompileOptions) throws -> IRGraph {
        try optimizeWithDecisions(recorded, options: options).graph
    }

    /// verify → SwiGLU → autodiff → dead code → fusion → dead code → x·Aᵀ hand-off → dead code → mode lowering
    /// → linear grouping → RMSNorm into the groups → add chains → dead code (the stages in `options.fusionStages`).
    private static func optimizeWithDecisions(_ recorded: IRGraph, options: CompileOptions)
        throws -> (graph: IRGraph, decisions: [ModeLowering.Decision]) {
        var g = recorded
        try VerifyPass.run(g)
        let stages: FusionStages = options.fusion ? options.fusionStages : []
        if stages.contains(.swiGLUBeforeAutodiff) { g = SwiGLUBeforeAutodiff.run(g) }
        g = try Autodiff.run(g)
        g = DeadCodeElimination.run(g)
        if options.fusion {
            g = DeadCodeElimination.run(FusionPass.run(g))
            g = DeadCodeElimination.run(DownProjectionHandOff.run(g))
        }
        let lowered = ModeLowering.run(g, mode: options.mode, model: CostModel.default(threads: options.threads))
        var grouped = stages.contains(.linearGroups) ? LinearGroupFusion.run(lowered.graph) : lowered.graph
        // (The linears a silu_mul group absorbed still read x until dead code drops them.)
        if stages.contains(.normIntoLinearGroups) { grouped = NormIntoLinearGroup.run(DeadCodeElimination.run(grouped)) }
        if stages.contains(.addChains) { grouped = AddChainFusion.run(grouped) }
        return (DeadCodeElimination.run(grouped), lowered.decisions)
    }
}

extension Graph {
    /// Verifies, optimizes and plans the graph into an immutable, reusable `ExecutablePlan` for
    /// concrete shapes: every symbolic dimension (`SymbolicDimension.named`) gets its size from `sizes`.
    public func compile(_ options: CompileOptions = CompileOptions(), sizes: [String: Int] = [:]) throws -> ExecutablePlan {
        for (name, size) in sizes.sorted(by: { $0.key < $1.key }) {
            let learned = resolveDimension(SymbolicDimension.named(name))
            guard learned < 0 || learned == size else {
                throw QLoraError.invalidArgument("dimension '\(name)' is \(learned) in the recorded graph, but sizes gives \(size)")
            }
        }
        return try Compiler.compile(snapshot.bindingSizes(sizes), options: options)
    }
}

/// A graph lowered and memory-planned, not yet scheduled into a plan (gradient checkpointing
/// compares the peaks of several before building one).
struct PlannedGraph {
    let graph: IRGraph
    let lowered: [LoweredStep?]
    let memory: MemoryPlan

    init(_ g: IRGraph, options: CompileOptions) throws {
        try VerifyPass.run(g)
        graph = g
        lowered = Scheduler.lower(g, options: options)
        memory = MemoryPlanner.run(g, scratchPerNode: lowered.map { $0?.scratchBytes ?? 0 })
    }

    /// What the plan will allocate: `ExecutablePlan.plannedPeakBytes`.
    var peakBytes: Int { memory.arenaBytes + memory.persistentBytes }

    func schedule(options: CompileOptions, decisions: [ModeLowering.Decision], checkpointing: CheckpointingReport? = nil) -> ExecutablePlan {
        Scheduler.run(graph, lowered: lowered, memory: memory, options: options, decisions: decisions, checkpointing: checkpointing)
    }
}
