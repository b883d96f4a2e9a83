import CQLoRAKernels
import Foundation

/// How a `Trainer` runs.
public struct TrainerOptions: Sendable {
    /// Optimizer steps in all (a resumed run continues up to it).
    public var steps: Int
    /// Micro-batches per optimizer step; their gradients are combined, each weighted by its share
    /// of the loss terms, so the step equals one on a batch k times larger.
    public var gradientAccumulation = 1
    /// Global-norm clipping (torch's clip_grad_norm_), nil for none.
    public var maxGradNorm: Double?
    /// The schedule's kind and warm-up (its total is `steps`).
    public var schedule: LearningRateSchedule.Kind = .constant
    public var warmupSteps = 0
    /// Seeds the batch order (shuffled per epoch when `shuffle`).
    public var seed: UInt64 = 0
    public var shuffle = true
    public var threads = Runtime.defaultThreads
    /// Write a checkpoint every N optimizer steps into `checkpointDirectory`/checkpoint-<step>.
    public var checkpointEvery: Int?
    public var checkpointDirectory: URL?
    /// A progress bar on stderr (step, loss, lr, tokens/s, ETA).
    public var progress = false
    /// Data-parallel runs (N > 1 ranks): reduce the gradients bucket by bucket while the last
    /// micro-batch's backward still runs, instead of after it (docs/distributed.md). The result
    /// bits are the same either way. Needs a collective that allows calls from another thread.
    public var overlapReduction = true
    /// The size the overlapped reduction's gradient buckets reach (the last one may be smaller).
    public var bucketBytes = 2 << 20

    public init(steps: Int) { self.steps = steps }

    /// Options for `epochs` passes over `batches` batches: ⌈epochs · batches / accumulation⌉ steps.
    public init(epochs: Int, batches: Int, gradientAccumulation: Int = 1) throws {
        guard epochs > 0, batches > 0, gradientAccumulation > 0 else {
            throw QLoraError.invalidArgument("epochs (\(epochs)), batches (\(batches)) and accumulation (\(gradientAccumulation)) must be > 0")
        }
        steps = (epochs * batches + gradientAccumulation - 1) / gradientAccumulation
        self.gradientAccumulation = gradientAccumulation
    }
}

/// What one optimizer step did.
public struct TrainingStepLog: Sendable {
    public var step: Int
    /// The loss of the whole (accumulated) batch: the micro-batch losses weighted by their loss terms.
    public var loss: Float
    /// The scheduled learning rate this step used.
    public var learningRate: Double
    /// The global gradient norm before clipping.
    public var gradNorm: Float
    public var tokensPerSecond: Double
    public var seconds: Double
    /// N > 1 ranks: how long the step waited, after its last backward, for the losses to be
    /// gathered and the gradients reduced (with the overlap, only the part not hidden behind the
    /// backward). 0 in one process.
    public var reductionWaitSeconds: Double = 0
}

/// Trains a `TrainingStep` on a `BatchSource` with an `Optimizer`: per optimizer step, k
/// micro-batches (gradients combined in a fixed order), the gradient norm, clipping, the
/// scheduled learning rate, the update; periodic checkpoints and exact resume.
///
/// Everything random is a function of (seed, micro-batch index): the batch order (a per-epoch
/// permutation) and the LoRA dropout mask (`LoraDropout.step` = the micro-batch index), so a
/// checkpoint only needs the counters to continue bit for bit.
public final class Trainer {
    public let step: any TrainingStep
    public let batches: any BatchSource
    public let optimizer: Optimizer
    public let dropout: LoraDropout?
    public let options: TrainerOptions
    public let schedule: LearningRateSchedule
    /// Writes the adapter files into a checkpoint directory (the caller knows modules and config).
    public var writeAdapter: ((URL) throws -> Void)?
    /// The data-parallel ranks (docs/distributed.md). Each rank runs `gradientAccumulation`
    /// micro-batches of every optimizer step: rank r the global micro-batches r·k ..< (r+1)·k of
    /// the step's N·k, so the step equals one process's with N·k accumulation, bit for bit.
    /// Rank 0 alone shows progress and writes checkpoints.
    public var collective: any Collective = SingleProcess()
    public private(set) var completedSteps = 0
    public private(set) var microBatches = 0
    private var accumulator = AlignedBuffer(byteCount: 0)
    /// Rank r > 0: its micro-batches' weighted gradients, folded in after the ranks before it.
    private var weighted: [AlignedBuffer] = []
    /// The overlapped reduction's buckets (made from the first plan, then fixed: every rank
    /// must send the same messages) and each plan's step per bucket.
    private var buckets: GradientBuckets?
    private var bucketSteps: [ObjectIdentifier: (plan: ExecutablePlan, steps: [Int])] = [:]

    /// Whether `run` overlaps the reduction with the backward: N > 1, asked for, and a
    /// collective that allows calls from the communication thread.
    public var overlapsReduction: Bool {
        collective.size > 1 && options.overlapReduction && collective.allowsCallsFromAnotherThread
    }

    public init(step: any TrainingStep, batches: any BatchSource, optimizer: Optimizer, dropout: LoraDropout? = nil,
                options: TrainerOptions) throws {
        guard step.parameters === optimizer.parameters else {
            throw QLoraError.invalidArgument("Trainer: the optimizer updates another parameter store than the training step fills")
        }
        guard options.steps > 0 else { throw QLoraError.invalidArgument("--steps must be > 0, got \(options.steps)") }
        guard options.gradientAccumulation > 0 else {
            throw QLoraError.invalidArgument("--grad-accum must be > 0, got \(options.gradientAccumulation)")
        }
        if let c = options.maxGradNorm, !(c.isFinite && c > 0) {
            throw QLoraError.invalidArgument("--max-grad-norm must be a finite number > 0, got \(c)")
        }
        if let n = options.checkpointEvery {
            guard n > 0 else { throw QLoraError.invalidArgument("--checkpoint-every must be > 0, got \(n)") }
            guard options.checkpointDirectory != nil else { throw QLoraError.invalidArgument("checkpoints need a directory") }
        }
        guard batches.count > 0 else { throw QLoraError.invalidArgument("the batch source holds no batch") }
        guard options.warmupSteps <= options.steps else {
            throw QLoraError.invalidArgument("--warmup \(options.warmupSteps) is more than --steps \(options.steps)")
        }
        self.step = step
        self.batches = batches
        self.optimizer = optimizer
        self.dropout = dropout
        self.options = options
        schedule = try LearningRateSchedule(options.schedule, warmupSteps: options.warmupSteps, totalSteps: options.steps)
    }

    /// The batch index of global micro-batch `i`: epoch i / count, position i % count in that
    /// epoch's permutation (Fisher–Yates from SplitMix64 keyed by seed and epoch).
    public func batchIndex(microBatch i: Int) -> Int {
        let n = batches.count, epoch = i / n, position = i % n
        guard options.shuffle, n > 1 else { return position }
        var rng = SplitMix64(seed: options.seed ^ (UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15) ^ 0x5348_5546_464C_4531)
        var order = Array(0..<n)
        for k in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(k + 1))
            order.swapAt(k, j)
        }
        return order[position]
    }

    /// Continues from a checkpoint directory (parameters, optimizer state, counters).
    public func resume(from directory: URL) throws {
        let state = try TrainingCheckpoint.restore(from: directory, into: optimizer)
        guard state.seed == options.seed else {
            throw QLoraError.invalidArgument("--resume \(directory.path): the checkpoint was written with --seed \(state.seed), this run has \(options.seed)")
        }
        guard state.step <= options.steps else {
            throw QLoraError.invalidArgument("--resume \(directory.path): the checkpoint is at step \(state.step), beyond --steps \(options.steps)")
        }
        completedSteps = state.step
        microBatches = state.microBatches
    }

    /// Writes a checkpoint of the current state into `directory` (atomically).
    public func saveCheckpoint(to directory: URL) throws {
        try TrainingCheckpoint.write(TrainingCheckpoint(step: completedSteps, microBatches: microBatches, seed: options.seed,
                                                        optimizer: TrainingCheckpoint.optimizerName(optimizer.method)),
                                     optimizer: optimizer, to: directory, writeExtra: writeAdapter)
    }

    /// Runs the remaining optimizer steps; `onStep` sees each one's log (throw from it to stop).
    public func run(onStep: (TrainingStepLog) throws -> Void = { _ in }) throws {
        let store = optimizer.parameters
        let ranks = collective.size, rank = collective.rank
        let perRank = options.gradientAccumulation
        let k = ranks * perRank  // micro-batches per optimizer step, over all ranks
        let overlap = overlapsReduction
        if ranks > 1 { try checkRanksAgree(overlap: overlap) }
        let started = DispatchTime.now().uptimeNanoseconds
        let firstStep = completedSteps + 1
        dropout?.isTraining = true
        defer { dropout?.isTraining = false }
        while completedSteps < options.steps {
            let stepNumber = completedSteps + 1
            let t0 = DispatchTime.now().uptimeNanoseconds
            var micro: [(batch: TrainingBatch, index: Int)] = []
            for j in 0..<perRank {
                let index = microBatches + rank * perRank + j
                micro.append((try batches.batch(batchIndex(microBatch: index)), index))
            }
            // Every micro-batch's loss terms, in global order (the weights need their total).
            var terms = micro.map(\.batch.lossTerms)
            if ranks > 1 { terms = try collective.allGather(terms.map(Double.init)).map { Int($0) } }
            let totalTerms = terms.reduce(0, +)
            var losses: [Float] = [], tokens = 0
            var reduction: OverlappedGradientSum?
            for (j, m) in micro.enumerated() {
                dropout?.step = UInt64(m.index)
                tokens += m.batch.tokens
                let weight = Float(Double(m.batch.lossTerms) / Double(totalTerms))
                if overlap, j == perRank - 1, let plan = try step.plan(for: m.batch) {
                    let (loss, running) = try runOverlapped(m.batch, plan: plan, weight: weight, first: j == 0, store: store)
                    losses.append(loss)
                    reduction = running
                    continue
                }
                losses.append(try step.run(m.batch))
                guard k > 1 else { continue }
                if rank == 0 {
                    accumulate(store, weight: weight, first: j == 0)
                } else {
                    keepWeighted(store, weight: weight, slot: j)
                }
            }
            var reductionWait = 0.0
            if ranks > 1 {
                let backwardEnd = DispatchTime.now().uptimeNanoseconds
                try reduction?.finish()
                let gathered = try collective.allGather(losses.map(Double.init) + [Double(tokens)])
                losses = []
                tokens = 0
                for r in 0..<ranks {
                    let row = gathered[(r * (perRank + 1))..<((r + 1) * (perRank + 1))]
                    losses += row.dropLast().map { Float($0) }
                    tokens += Int(row.last!)
                }
                if reduction == nil { try reduceAfterBackward(store) }
                reductionWait = Double(DispatchTime.now().uptimeNanoseconds - backwardEnd) / 1e9
            }
            // The loss of the whole batch: micro-batch losses weighted by their loss terms, in order.
            var loss = 0.0
            if k == 1 {
                loss = Double(losses[0])
            } else {
                for (j, l) in losses.enumerated() { loss += Double(Float(Double(terms[j]) / Double(totalTerms))) * Double(l) }
            }
            if k > 1 { finishAccumulation(store) }
            let gradNorm = GradientNorm.total(store)
            guard loss.isFinite, gradNorm.isFinite else {
                // Every rank has the same numbers: rank 0 alone reports.
                guard rank == 0 else { throw RankStopped(reporter: 0) }
                throw QLoraError.invalidArgument("training diverged at step \(stepNumber): loss \(loss), grad_norm \(gradNorm) (try a smaller learning rate than \(optimizer.method.learningRate))")
            }
            let coefficient = options.maxGradNorm.map { GradientNorm.clipCoefficient(total: gradNorm, maxNorm: $0) } ?? 1
            let lr = schedule.learningRate(step: stepNumber, base: optimizer.method.learningRate)
            optimizer.step(learningRate: lr, gradientScale: coefficient, threads: options.threads)
            microBatches += k
            completedSteps = stepNumber
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let log = TrainingStepLog(step: stepNumber, loss: Float(loss), learningRate: lr, gradNorm: gradNorm,
                                      tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : 0, seconds: seconds,
                                      reductionWaitSeconds: reductionWait)
            if options.progress && rank == 0 {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                let eta = elapsed / Double(stepNumber - firstStep + 1) * Double(options.steps - stepNumber)
                TrainingProgress.show(log, of: options.steps, eta: eta, done: stepNumber == options.steps)
            }
            try onStep(log)
            if rank == 0, let every = options.checkpointEvery, let dir = options.checkpointDirectory, stepNumber % every == 0 {
                try saveCheckpoint(to: dir.appendingPathComponent("checkpoint-\(stepNumber)"))
            }
        }
    }

    /// The accumulation buffers for `store` (rank r > 0 also keeps one product per micro-batch).
    private func ensureBuffers(_ store: ParameterStore) {
        if accumulator.byteCount != store.count * 4 { accumulator = AlignedBuffer(byteCount: store.count * 4) }
        let slots = collective.rank > 0 ? options.gradientAccumulation : 0
        if weighted.count != slots || weighted.first?.byteCount != store.count * 4 {
            weighted = (0..<slots).map { _ in AlignedBuffer(byteCount: store.count * 4) }
        }
    }

    private var sum: UnsafeMutablePointer<Float> { accumulator.raw.assumingMemoryBound(to: Float.self) }

    /// accumulator = Σ weight_j · g_j over the micro-batches so far (first: starts over).
    private func accumulate(_ store: ParameterStore, weight: Float, first: Bool) {
        ensureBuffers(store)
        store.flatGradientState.read {
            cq_accumulate_scaled(sum, store.flatGradientState.region.floats, weight, first ? 1 : 0,
                                 Int64(store.count), Int32(options.threads))
        }
    }

    /// Rank r > 0: weight · g into its slot for micro-batch `slot` (the product the fold would form).
    private func keepWeighted(_ store: ParameterStore, weight: Float, slot: Int) {
        ensureBuffers(store)
        store.flatGradientState.read {
            cq_accumulate_scaled(weighted[slot].raw.assumingMemoryBound(to: Float.self), store.flatGradientState.region.floats, weight, 1,
                                 Int64(store.count), Int32(options.threads))
        }
    }

    /// The ordered reduction of the whole buffer after the backward (no overlap).
    private func reduceAfterBackward(_ store: ParameterStore) throws {
        ensureBuffers(store)
        try OrderedGradientSum.chain(sum, weighted: weighted.map { UnsafePointer($0.raw.assumingMemoryBound(to: Float.self)) },
                                     range: 0..<store.count, collective: collective, threads: options.threads)
        try collective.broadcast(UnsafeMutableBufferPointer(start: sum, count: store.count), root: collective.size - 1)
    }

    /// The last micro-batch of a step with the reduction overlapped: a communication thread
    /// reduces each gradient bucket as the plan's steps finish it (`OverlappedGradientSum`) while
    /// this thread runs the rest of the backward. Returns the loss and the running reduction.
    ///
    /// The thread reads a bucket's gradient slices after the executor signalled that their
    /// `assign` steps ran; no later step of the run writes them (the plan holds their locks, the
    /// signal orders the memory).
    private func runOverlapped(_ batch: TrainingBatch, plan: ExecutablePlan, weight: Float, first: Bool,
                               store: ParameterStore) throws -> (Float, OverlappedGradientSum) {
        let layout = try bucketLayout(plan: plan, store: store)
        let steps = try bucketSteps[ObjectIdentifier(plan)]?.steps ?? {
            let steps = try layout.completionSteps(in: plan, store: store)
            bucketSteps[ObjectIdentifier(plan)] = (plan, steps)
            return steps
        }()
        ensureBuffers(store)
        let reduction = OverlappedGradientSum(buckets: layout, collective: collective, sum: sum,
                                              gradients: UnsafePointer(store.flatGradientState.region.floats),
                                              weighted: weighted.map { $0.raw.assumingMemoryBound(to: Float.self) },
                                              weight: weight, firstFold: first)
        let observer = try PlanStepObserver(plan: plan, signals: steps.enumerated().map { (step: $0.element, tag: $0.offset) }) {
            reduction.bucketReady($0)
        }
        reduction.start()
        do {
            let loss = try observer.observing { try step.run(batch) }
            try reduction.checkEveryBucketSignalled()
            return (loss, reduction)
        } catch {
            reduction.cancel()
            throw error
        }
    }

    /// The bucket layout, made once from the first plan; the ranks compare it before the first use.
    private func bucketLayout(plan: ExecutablePlan, store: ParameterStore) throws -> GradientBuckets {
        if let buckets { return buckets }
        let layout = try GradientBuckets(plan: plan, store: store, targetBytes: options.bucketBytes)
        let all = try collective.allGather([layout.fingerprint, Double(layout.buckets.count)])
        for r in 1..<collective.size where all[2 * r] != all[0] || all[2 * r + 1] != all[1] {
            guard collective.rank == 0 else { throw RankStopped(reporter: 0) }
            throw QLoraError.invalidArgument("rank \(r) of \(collective.size) cut the gradients into other buckets than rank 0 (\(Int(all[2 * r + 1])) vs \(Int(all[1]))): every rank must train the same model")
        }
        buckets = layout
        return layout
    }

    /// Ranks that disagree on the run (another --seed, data, checkpoint, …) would take different
    /// steps and silently diverge: every rank compares its settings with rank 0's first.
    private func checkRanksAgree(overlap: Bool) throws {
        let seed = options.seed
        let fields: [(String, Double)] = [
            ("trainable parameters", Double(optimizer.parameters.count)), ("steps", Double(options.steps)),
            ("gradient accumulation", Double(options.gradientAccumulation)), ("batches per epoch", Double(batches.count)),
            ("seed (high 32 bits)", Double(seed >> 32)), ("seed (low 32 bits)", Double(seed & 0xFFFF_FFFF)),
            ("completed steps", Double(completedSteps)), ("micro-batches", Double(microBatches)),
            ("shuffle", options.shuffle ? 1 : 0), ("dropout", dropout.map { Double($0.probability) } ?? 0),
            ("overlapped reduction", overlap ? 1 : 0), ("gradient bucket bytes", Double(options.bucketBytes)),
        ]
        let all = try collective.allGather(fields.map(\.1))
        for r in 1..<collective.size {
            for (i, field) in fields.enumerated() where all[r * fields.count + i] != all[i] {
                // Every rank sees it; rank 0 alone reports it (the others stop without a message of their own).
                guard collective.rank == 0 else { throw RankStopped(reporter: 0) }
                func show(_ v: Double) -> String { v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : "\(v)" }
                throw QLoraError.invalidArgument("rank \(r) of \(collective.size) disagrees with rank 0 on the \(field.0): \(show(all[r * fields.count + i])) vs \(show(all[i])) (every rank must run the same command on the same files)")
            }
        }
    }

    /// The combined gradient back into the store's gradient buffer (what the optimizer reads).
    private func finishAccumulation(_ store: ParameterStore) {
        store.flatGradientState.write {
            store.flatGradientState.region.floats.update(from: sum, count: store.count)
        }
    }
}

/// The trainer's progress line on stderr: redrawn in place on a terminal, one line per ~5% otherwise.
enum TrainingProgress {
    static func show(_ log: TrainingStepLog, of total: Int, eta: Double, done: Bool) {
        let tty = isatty(2) != 0
        let every = max(1, total / 20)
        guard tty || done || log.step == 1 || log.step % every == 0 else { return }
        let width = 24, filled = width * log.step / max(total, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let etaText = String(format: "%d:%02d", Int(eta) / 60, Int(eta) % 60)
        let line = "[\(bar)] step \(log.step)/\(total) loss " + String(format: "%.6g lr %.3g %.0f tok/s", Double(log.loss), log.learningRate,
                                                                                     log.tokensPerSecond) + " ETA \(etaText)"
        FileHandle.standardError.write(Data(((tty ? "\r" : "") + line + (tty && !done ? "" : "\n")).utf8))
    }
}
