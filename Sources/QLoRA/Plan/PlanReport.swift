import Foundation

/// An `ExecutablePlan` as structured data, for `qlora inspect`: steps with kernels and costs,
/// each arena buffer's offset, size and lifetime, the mode decisions and the memory totals. The
/// numbers are read from the plan itself, so they always agree with its API.
public struct PlanReport: Sendable, Equatable {
    public struct StepInfo: Sendable, Equatable {
        public var index: Int
        public var kernel: String
        public var label: String
        /// The IR node the step computes.
        public var node: Int
        /// Where the result goes: "arena", "output" (the returned array), "input", "parameter", "weight" or "cached".
        public var outputKind: String
        /// Byte offset in the arena (arena results only, else -1).
        public var outputOffset: Int
        public var outputBytes: Int
        public var flops: Int
        public var bytesMoved: Int
        public var scratchBytes: Int
        public var fusedOps: [String]
        /// How the kernel divides the work among threads.
        public var workSplit: String
    }

    public struct BufferInfo: Sendable, Equatable {
        public var node: Int
        public var label: String
        public var offset: Int
        public var bytes: Int
        /// The steps (indices into `steps`, 0-based) that define the buffer and use it last.
        public var firstStep: Int
        public var lastStep: Int
    }

    public struct DecisionInfo: Sendable, Equatable {
        public var weight: String
        public var rows: Int
        public var mode: String
        public var onTheFlySeconds: Double
        public var cachedSeconds: Double
    }

    public var mode: String
    public var threads: Int
    public var fusion: Bool
    public var computeType: String
    public var isa: String
    public var steps: [StepInfo]
    public var buffers: [BufferInfo]
    public var decisions: [DecisionInfo]
    public var arenaBytes: Int
    public var scratchBytes: Int
    public var unsharedBufferBytes: Int
    public var persistentBytes: Int
    /// The persistent bytes by kind: 4-bit weights with statistics, cached f32 weights, parameters.
    public var quantizedWeightBytes: Int
    public var cachedWeightBytes: Int
    public var parameterBytes: Int
    /// Persistent buffers the steps update (accumulators, optimizer moments, caches).
    public var stateBytes: Int
    /// Arena + persistent: what `CompileOptions.memoryBudget` bounds.
    public var plannedPeakBytes: Int
    /// Gradient checkpointing: segments kept or recomputed, the peak without (nil when not asked for).
    public var checkpointing: CheckpointingReport?
    public var totalFlops: Int { steps.reduce(0) { $0 + $1.flops } }
    public var totalBytesMoved: Int { steps.reduce(0) { $0 + $1.bytesMoved } }

    public init(_ plan: ExecutablePlan) {
        mode = plan.options.mode.rawValue
        threads = plan.options.threads
        fusion = plan.options.fusion
        computeType = plan.options.computeType.rawValue
        isa = Runtime.isa
        steps = plan.steps.enumerated().map { i, s in
            var kind = "arena", offset = -1, bytes = 0
            switch s.output {
            case let .arena(o, size): offset = o; bytes = size
            case .parameter: kind = "parameter"
            case .weight: kind = "weight"
            case .cached: kind = "cached"
            case .state: kind = "state"
            case .input: kind = "input"
            case .output: kind = "output"
            }
            return StepInfo(index: i, kernel: s.kernelName, label: s.label, node: s.node, outputKind: kind, outputOffset: offset,
                            outputBytes: bytes, flops: s.flops, bytesMoved: s.bytesMoved, scratchBytes: s.scratchBytes, fusedOps: s.fusedOps, workSplit: s.workSplit)
        }
        buffers = plan.memory.buffers.sorted { ($0.start, $0.offset) < ($1.start, $1.offset) }.map { b in
            let n = plan.ir.nodes[b.node]
            return BufferInfo(node: b.node, label: n.label.isEmpty ? n.op.name : n.label, offset: b.offset, bytes: b.bytes,
                              firstStep: b.start - 1, lastStep: b.end - 1) // the memory plan counts steps from 1
        }
        decisions = plan.decisions.map {
            DecisionInfo(weight: $0.weight, rows: $0.rows, mode: $0.mode.rawValue, onTheFlySeconds: $0.onTheFlySeconds, cachedSeconds: $0.cachedSeconds)
        }
        arenaBytes = plan.arenaBytes
        scratchBytes = plan.scratchBytes
        unsharedBufferBytes = plan.unsharedBufferBytes
        persistentBytes = plan.persistentBytes
        quantizedWeightBytes = plan.memory.weights.reduce(0) { $0 + $1.memoryBytes }
        cachedWeightBytes = plan.memory.cachedWeights.reduce(0) { $0 + $1.count * 4 }
        parameterBytes = plan.memory.parameters.reduce(0) { $0 + $1.memoryBytes }
        stateBytes = plan.memory.states.reduce(0) { $0 + $1.memoryBytes }
        plannedPeakBytes = plan.plannedPeakBytes
        checkpointing = plan.checkpointing
    }

    /// The report as JSON (keys in snake_case).
    public var json: JSONValue {
        func num(_ d: Double) -> JSONValue { .number(d, text: pythonFloatRepr(d)) }
        return .object([
            ("mode", .string(mode)), ("threads", .int(threads)), ("fusion", .bool(fusion)), ("compute_type", .string(computeType)), ("isa", .string(isa)),
            ("steps", .array(steps.map { s in
                .object([("index", .int(s.index)), ("kernel", .string(s.kernel)), ("label", .string(s.label)), ("node", .int(s.node)),
                         ("output", .object([("kind", .string(s.outputKind)), ("offset", .int(s.outputOffset)), ("bytes", .int(s.outputBytes))])),
                         ("flops", .int(s.flops)), ("bytes_moved", .int(s.bytesMoved)), ("scratch_bytes", .int(s.scratchBytes)),
                         ("fused_ops", .array(s.fusedOps.map { .string($0) })), ("work_split", .string(s.workSplit))])
            })),
            ("buffers", .array(buffers.map { b in
                .object([("node", .int(b.node)), ("label", .string(b.label)), ("offset", .int(b.offset)), ("bytes", .int(b.bytes)),
                         ("first_step", .int(b.firstStep)), ("last_step", .int(b.lastStep))])
            })),
            ("decisions", .array(decisions.map { d in
                .object([("weight", .string(d.weight)), ("rows", .int(d.rows)), ("mode", .string(d.mode)),
                         ("on_the_fly_seconds", num(d.onTheFlySeconds)), ("cached_seconds", num(d.cachedSeconds))])
            })),
            ("memory", .object([("arena_bytes", .int(arenaBytes)), ("scratch_bytes", .int(scratchBytes)),
                                ("unshared_buffer_bytes", .int(unsharedBufferBytes)), ("persistent_bytes", .int(persistentBytes)),
                                ("quantized_weight_bytes", .int(quantizedWeightBytes)), ("cached_weight_bytes", .int(cachedWeightBytes)),
                                ("parameter_bytes", .int(parameterBytes)), ("planned_peak_bytes", .int(plannedPeakBytes))])),
            ("checkpointing", checkpointing.map { c in
                .object([("budget", c.budget.map { .int($0) } ?? .null), ("every_segment", .bool(c.everySegment)),
                         ("peak_without_bytes", .int(c.peakWithoutBytes)), ("peak_bytes", .int(plannedPeakBytes)),
                         ("segments", .array(c.segments.map { s in
                             .object([("index", .int(s.index)), ("first", .string(s.first)), ("boundary", .string(s.boundary)),
                                      ("steps", .int(s.steps)), ("saved_values", .int(s.savedValues)), ("saved_bytes", .int(s.savedBytes)),
                                      ("recomputed", .bool(s.recomputed)), ("recomputed_steps", .int(s.recomputedSteps)),
                                      ("candidate", .bool(s.candidate))])
                         }))])
            } ?? .null),
            ("total_flops", .int(totalFlops)), ("total_bytes_moved", .int(totalBytesMoved)),
        ])
    }

    /// The arena buffers as a table: offset, size and lifetime (steps), plus a bar per buffer.
    public var bufferTable: String {
        let lastStep = max(steps.count - 1, buffers.map(\.lastStep).max() ?? 0)
        func left(_ s: String, _ n: Int) -> String { s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count) }
        func right(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        var lines = ["  " + left("node", 5) + left("buffer", 32) + right("offset", 10) + right("bytes", 10) + "  lifetime (steps 0…\(lastStep))"]
        for b in buffers {
            let bar = String((0...lastStep).map { $0 >= b.firstStep && $0 <= b.lastStep ? "█" : "·" })
            lines.append("  " + left("%\(b.node)", 5) + left(b.label, 32) + right(String(b.offset), 10) + right(String(b.bytes), 10)
                         + "  \(bar) \(b.firstStep)–\(b.lastStep)")
        }
        return lines.joined(separator: "\n")
    }
}
