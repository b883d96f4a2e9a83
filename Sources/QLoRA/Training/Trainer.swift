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
    private var accumulator: [Float] = []
    /// Rank r > 0: its micro-batches' weighted gradients, folded in after the ranks before it.
    private var weighted: [[Float]] = []

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
        if ranks > 1 { try checkRanksAgree() }
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
            for (j, m) in micro.enumerated() {
                dropout?.step = UInt64(m.index)
                losses.append(try step.run(m.batch))
                tokens += m.batch.tokens
                guard k > 1 else { continue }
                let weight = Float(Double(m.batch.lossTerms) / Double(totalTerms))
                if rank == 0 {
                    accumulate(store, weight: weight, first: j == 0)
                } else {
                    keepWeighted(store, weight: weight, slot: j)
                }
            }
            if ranks > 1 {
                let gathered = try collective.allGather(losses.map(Double.init) + [Double(tokens)])
                losses = []
                tokens = 0
                for r in 0..<ranks {
                    let row = gathered[(r * (perRank + 1))..<((r + 1) * (perRank + 1))]
                    losses += row.dropLast().map { Float($0) }
                    tokens += Int(row.last!)
                }
                try OrderedGradientSum.reduce(&accumulator, weighted: weighted, collective: collective, threads: options.threads)
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
                                      tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : 0, seconds: seconds)
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

    /// accumulator = Σ weight_j · g_j over the micro-batches so far (first: starts over).
    private func accumulate(_ store: ParameterStore, weight: Float, first: Bool) {
        if accumulator.count != store.count { accumulator = [Float](repeating: 0, count: store.count) }
        store.flatGradientState.lock.read {
            accumulator.withUnsafeMutableBufferPointer {
                cq_accumulate_scaled($0.baseAddress!, store.flatGradientState.region.floats, weight, first ? 1 : 0,
                                     Int64(store.count), Int32(options.threads))
            }
        }
    }

    /// Rank r > 0: weight · g into its slot for micro-batch `slot` (the product the fold would form).
    private func keepWeighted(_ store: ParameterStore, weight: Float, slot: Int) {
        if weighted.count != options.gradientAccumulation || weighted.first?.count != store.count {
            weighted = Array(repeating: [Float](repeating: 0, count: store.count), count: options.gradientAccumulation)
        }
        if accumulator.count != store.count { accumulator = [Float](repeating: 0, count: store.count) }
        store.flatGradientState.lock.read {
            weighted[slot].withUnsafeMutableBufferPointer {
                cq_accumulate_scaled($0.baseAddress!, store.flatGradientState.region.floats, weight, 1,
                                     Int64(store.count), Int32(options.threads))
            }
        }
    }

    /// Ranks that disagree on the run (another --seed, data, checkpoint, …) would take different
    /// steps and silently diverge: every rank compares its settings with rank 0's first.
    private func checkRanksAgree() throws {
        let seed = options.seed
        let fields: [(String, Double)] = [
            ("trainable parameters", Double(optimizer.parameters.count)), ("steps", Double(options.steps)),
            ("gradient accumulation", Double(options.gradientAccumulation)), ("batches per epoch", Double(batches.count)),
            ("seed (high 32 bits)", Double(seed >> 32)), ("seed (low 32 bits)", Double(seed & 0xFFFF_FFFF)),
            ("completed steps", Double(completedSteps)), ("micro-batches", Double(microBatches)),
            ("shuffle", options.shuffle ? 1 : 0), ("dropout", dropout.map { Double($0.probability) } ?? 0),
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
        store.flatGradientState.lock.write {
            accumulator.withUnsafeBufferPointer { store.flatGradientState.region.floats.update(from: $0.baseAddress!, count: store.count) }
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
