import ArgumentParser
import Foundation
import QLoRA
import QLoRADistributed
#if canImport(Glibc)
import Glibc
#endif

enum TrainLoss: String, ExpressibleByArgument { case mse, causalLM = "causal-lm" }
enum TrainOptimizer: String, ExpressibleByArgument { case adamw, sgd }
extension LearningRateSchedule.Kind: ExpressibleByArgument {}

/// `qlora train GRAPH --weights W --data D --steps N --optimizer adamw|sgd --lr LR --out DIR`:
/// LoRA adapters on the target linears of the graph, trained by the library's `Trainer` over one
/// compiled plan (forward + mse + backward); the update (clipping, schedule, AdamW/SGD) runs on the
/// flat parameter buffer after it. The result is a PEFT adapter directory.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train LoRA adapters on the linears of a graph (frozen 4-bit weights) and save a PEFT adapter.",
        discussion: """
            --data holds the graph's inputs by name plus 'target', shaped like the graph's (single) output. Without \
            --batch-size all of it is one batch; with it, every tensor is split along its leading dimension into \
            batches (shuffled per epoch from --seed; trailing rows that do not fill a batch are left out of that \
            epoch). Each optimizer step runs --grad-accum micro-batches and combines their gradients so that the step \
            equals one on a batch that many times larger, clips the global gradient norm (--max-grad-norm, as \
            torch.nn.utils.clip_grad_norm_), and updates with the scheduled learning rate (--schedule, --warmup: \
            transformers' get_*_schedule_with_warmup). With --adapter, training starts from that PEFT adapter (its \
            config sets r, alpha, rsLoRA and the target modules); otherwise the linears matching --target-modules \
            (PEFT suffix matching; default: all) get a fresh LoRA (A Kaiming-uniform from --seed, B = 0). --dropout \
            applies LoRA dropout on the adapters' input during training (mask keyed by seed, micro-batch and \
            element). --out receives adapter_model.safetensors and adapter_config.json (each written atomically); \
            --checkpoint-every N also writes --out/checkpoint-<step> (adapter, optimizer state, counters), which \
            --resume continues from with the same bits as an uninterrupted run. --log-json writes one JSON object \
            per step: step, loss, lr (scheduled), grad_norm (global L2 norm before clipping), tokens_per_s, ranks. \
            Under `mpirun -np N` the run is data-parallel (docs/distributed.md): each optimizer step takes N × --grad-accum \
            micro-batches, rank r computes its --grad-accum of them, and the gradients are summed in a fixed order, so the \
            adapter equals one process's with N × --grad-accum bit for bit; rank 0 alone prints and writes files. The \
            reduction overlaps the last micro-batch's backward (gradient buckets of --bucket-size, same bits; --no-overlap \
            reduces after it), and the --log-json lines gain step_ms, reduce_wait_ms and overlap.
            """)

    @Argument(help: "The graph file (qlora-graph JSON, see docs/graph-format.md); with --model it may be left out (Graphs/llama.json).")
    var graph: String?

    @Option(name: .customLong("dim"), help: ArgumentHelp("A named dimension's value, NAME=N (repeatable).", valueName: "name=N"))
    var dims: [String] = []

    @OptionGroup(title: "Quantization at load (f32/f16/bf16 weights, GGUF models)")
    var quantization: QuantizationOptions

    @Option(help: "The safetensors checkpoint (bitsandbytes 4-bit, or f32/f16/bf16 quantized at load); frozen.")
    var weights: String?

    @Option(help: "A Llama-family model: a Hugging Face directory or a GGUF file (causal-LM training; frozen 4-bit base).")
    var model: String?

    @Option(help: "Training data: safetensors (graph inputs + 'target' for mse; 'input_ids' [+ 'labels'] for causal-lm) or, with --model, a JSONL file (text, prompt/completion or messages).")
    var data: String

    @Option(help: "With --model: a JSONL or safetensors file whose mean loss is reported every --eval-every steps.")
    var valid: String?

    @Option(help: "Evaluate --valid every N steps (default: 10 evaluations per run, and after the last step).")
    var evalEvery: Int?

    @Option(help: "With --model and JSONL data: the longest example in tokens (longer ones are cut).")
    var seqLen: Int?

    @Flag(help: "With JSONL data: train on every token, not only the completion / assistant turns.")
    var noMaskPrompt = false

    @Flag(help: "With JSONL data and --seq-len N: pack examples back to back into rows of N tokens (attention and RoPE positions restart at each example) instead of padding each to the longest.")
    var packing = false

    @Option(help: "The loss: mse (mean squared error against 'target'), or causal-lm (default with --model).")
    var loss: TrainLoss?

    @Option(help: "Optimizer steps (or give --epochs).")
    var steps: Int?

    @Option(help: "Passes over the data (instead of --steps).")
    var epochs: Int?

    @Option(help: "adamw (torch.optim.AdamW, betas 0.9/0.999, eps 1e-8) or sgd (torch.optim.SGD).")
    var optimizer: TrainOptimizer

    @Option(help: "The base learning rate (the schedule multiplies it).")
    var lr: Double

    @Option(help: "SGD momentum (default 0: p -= lr·g).")
    var momentum: Double?

    @Option(help: "AdamW decoupled weight decay (default 0.01, torch's).")
    var weightDecay: Double?

    @Option(help: "Clip the global gradient norm to this (torch.nn.utils.clip_grad_norm_).")
    var maxGradNorm: Double?

    @Option(help: "Micro-batches per optimizer step (gradient accumulation).")
    var gradAccum: Int = 1

    @Option(help: "Learning-rate schedule: constant, linear or cosine (after --warmup linear warm-up steps).")
    var schedule: LearningRateSchedule.Kind = .constant

    @Option(help: "Linear warm-up steps (from 0 to --lr).")
    var warmup: Int = 0

    @Option(help: "Rows per batch (split along the leading dimension of every tensor in --data).")
    var batchSize: Int?

    @Option(help: "Start from this PEFT LoRA adapter directory (its config sets r, alpha, rsLoRA, target modules).")
    var adapter: String?

    @Option(help: "LoRA rank of new adapters (default 8).")
    var rank: Int?

    @Option(help: "LoRA alpha of new adapters (default 16; scaling alpha / r).")
    var alpha: Double?

    @Flag(help: profileHelp)
    var profile = false

    @Flag(help: "rsLoRA scaling alpha / √r for new adapters.")
    var rslora = false

    @Option(help: "LoRA dropout probability on the adapters' input during training (default 0).")
    var dropout: Float?

    @Option(help: "Comma-separated module names that get new adapters (PEFT suffix matching; default: every linear).")
    var targetModules: String?

    @Option(help: "Seed of the adapters' initialisation, the dropout masks and the batch order.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @Option(help: "Arithmetic of the frozen base's matmuls: f32, or bf16 (the 4-bit linears forward and dX, the lm_head forward and dX; LoRA, loss, norms, attention and the optimizer stay f32; AVX512-BF16 CPUs, f32 elsewhere; docs/bf16-training.md).")
    var computeType: ComputeType = .float32

    @Flag(help: ieeeDenormalsHelp)
    var ieeeDenormals = false

    @Option(help: "Write one JSON object per step to this file (JSON lines).")
    var logJson: String?

    @Flag(help: "Under mpirun: reduce the gradients after the last micro-batch's backward instead of overlapping the reduction with it (the same bits either way).")
    var noOverlap = false

    @Option(help: ArgumentHelp("Under mpirun: the size of the gradient buckets the overlapped reduction sends as the backward finishes them (binary units, default 2M).", valueName: "size"))
    var bucketSize = "2M"

    @Option(help: "Write a checkpoint to --out/checkpoint-<step> every N steps.")
    var checkpointEvery: Int?

    @Option(help: "Continue from a checkpoint directory written by --checkpoint-every.")
    var resume: String?

    @Option(help: ArgumentHelp("Bound the training plan's memory (arena + persistent), e.g. 512M or 2G (binary units): segments of the forward are recomputed in the backward (gradient checkpointing) until the planned peak fits; below the smallest reachable peak, an error names it.", valueName: "size"))
    var memoryBudget: String?

    @Flag(help: "Recompute every checkpoint segment (each half decoder layer of a Llama model) in the backward instead of keeping its activations (transformers' gradient_checkpointing).")
    var gradientCheckpointing = false

    @Option(help: "The adapter directory to write (created if missing).")
    var out: String

    @Flag(help: "Replace read-only output files.")
    var force = false

    func run() throws {
        // Under mpirun every rank runs this command; without a launcher it is one process.
        let mpi = MPICollective.launched() ? try MPICollective() : nil
        do {
            // Under mpirun only rank 0 prints the profile (every rank runs the same plans).
            try profiled(profile && (mpi?.rank ?? 0) == 0) { try train(collective: mpi ?? SingleProcess()) }
            try mpi?.finish()
        } catch {
            guard let mpi else { throw fail(error) }
            // The reporting rank prints and aborts the job; stay silent unless it has not done so in 30 s.
            if error is RankStopped { sleep(30) }
            // One rank failed: say which and why, then end every rank of the job (non-zero exit).
            FileHandle.standardError.write(Data("error: rank \(mpi.rank) of \(mpi.size): \(error)\n".utf8))
            mpi.abort(code: 1)
        }
    }

    /// Checks the option values before any work is done.
    func validateOptions() throws {
        switch (steps, epochs) {
        case (nil, nil): throw QLoraError.invalidArgument("give --steps N or --epochs E")
        case (.some, .some): throw QLoraError.invalidArgument("--steps and --epochs are exclusive: give one")
        case let (s?, nil): guard s > 0 else { throw QLoraError.invalidArgument("--steps must be > 0, got \(s)") }
        case let (nil, e?): guard e > 0 else { throw QLoraError.invalidArgument("--epochs must be > 0, got \(e)") }
        }
        if model != nil {
            guard weights == nil else { throw QLoraError.invalidArgument("--weights and --model are exclusive: give one") }
            guard (loss ?? .causalLM) == .causalLM else { throw QLoraError.invalidArgument("--model trains a causal LM: --loss causal-lm (mse needs a graph and --weights)") }
            if let seqLen, seqLen < 2 { throw QLoraError.invalidArgument("--seq-len must be >= 2, got \(seqLen)") }
            if packing, seqLen == nil { throw QLoraError.invalidArgument("--packing needs --seq-len N (the length of a packed row)") }
            if let evalEvery, evalEvery <= 0 { throw QLoraError.invalidArgument("--eval-every must be > 0, got \(evalEvery)") }
        } else {
            guard (loss ?? .mse) == .mse else {
                throw QLoraError.invalidArgument("--loss causal-lm trains a Llama-family model: give --model DIR|FILE.gguf")
            }
            guard graph != nil else { throw QLoraError.invalidArgument("give the graph file (or --model for a causal LM)") }
            guard weights != nil else { throw QLoraError.invalidArgument("give --weights (the graph's checkpoint) or --model") }
            for (flag, set) in [("--valid", valid != nil), ("--seq-len", seqLen != nil), ("--eval-every", evalEvery != nil), ("--no-mask-prompt", noMaskPrompt), ("--packing", packing)] where set {
                throw QLoraError.invalidArgument("\(flag) applies to causal-LM training with --model")
            }
        }
        guard lr.isFinite, lr > 0 else { throw QLoraError.invalidArgument("--lr must be a finite number > 0, got \(lr)") }
        if let momentum {
            guard optimizer == .sgd else { throw QLoraError.invalidArgument("--momentum applies to --optimizer sgd, not \(optimizer.rawValue)") }
            guard momentum.isFinite, momentum >= 0 else { throw QLoraError.invalidArgument("--momentum must be a finite number >= 0, got \(momentum)") }
        }
        if let weightDecay {
            guard optimizer == .adamw else { throw QLoraError.invalidArgument("--weight-decay applies to --optimizer adamw, not \(optimizer.rawValue)") }
            guard weightDecay.isFinite, weightDecay >= 0 else { throw QLoraError.invalidArgument("--weight-decay must be a finite number >= 0, got \(weightDecay)") }
        }
        if adapter != nil, rank != nil || alpha != nil || rslora || targetModules != nil {
            throw QLoraError.invalidArgument("--adapter sets r, alpha, rsLoRA and the target modules from its config; drop --rank, --alpha, --rslora and --target-modules")
        }
        if let dropout, !(dropout.isFinite && dropout >= 0 && dropout < 1) {
            throw QLoraError.invalidArgument("--dropout must be in [0, 1), got \(dropout)")
        }
        if let maxGradNorm, !(maxGradNorm.isFinite && maxGradNorm > 0) {
            throw QLoraError.invalidArgument("--max-grad-norm must be a finite number > 0, got \(maxGradNorm)")
        }
        guard gradAccum > 0 else { throw QLoraError.invalidArgument("--grad-accum must be > 0, got \(gradAccum)") }
        if let steps { guard warmup >= 0, warmup <= steps else { throw QLoraError.invalidArgument("--warmup must be in 0...--steps (\(steps)), got \(warmup)") } }
        guard warmup >= 0 else { throw QLoraError.invalidArgument("--warmup must be >= 0, got \(warmup)") }
        if let batchSize, batchSize <= 0 { throw QLoraError.invalidArgument("--batch-size must be > 0, got \(batchSize)") }
        if let checkpointEvery, checkpointEvery <= 0 { throw QLoraError.invalidArgument("--checkpoint-every must be > 0, got \(checkpointEvery)") }
        if let targets = targetModuleList, targets.isEmpty || targets.contains(where: \.isEmpty) {
            throw QLoraError.invalidArgument("--target-modules expects comma-separated module names, got \"\(targetModules ?? "")\"")
        }
        if let rank, rank <= 0 { throw QLoraError.invalidArgument("--rank must be > 0, got \(rank)") }
        if let alpha, !(alpha.isFinite && alpha >= 0) { throw QLoraError.invalidArgument("--alpha must be a finite number >= 0, got \(alpha)") }
        _ = try memoryBudgetBytes()
    }

    /// --memory-budget in bytes.
    func memoryBudgetBytes() throws -> Int? { try memoryBudget.map { try ByteSize.parse($0, option: "--memory-budget") } }

    /// The training plan's compile options: threads, memory budget, gradient checkpointing.
    func compileOptions(threads: Int) throws -> CompileOptions {
        CompileOptions(threads: threads, computeType: computeType, memoryBudget: try memoryBudgetBytes(), gradientCheckpointing: gradientCheckpointing,
                       flushDenormals: !ieeeDenormals)
    }

    /// One stderr line on what checkpointing chose for `plan` (nothing when it was not asked for).
    static func noteCheckpointing(_ plan: ExecutablePlan) {
        guard let c = plan.checkpointing else { return }
        FileHandle.standardError.write(Data(("gradient checkpointing: \(c.recomputedSegments) of \(c.segments.count) segments recomputed "
            + "(\(c.recomputedSteps) steps); planned peak \(plan.plannedPeakBytes) bytes, \(c.peakWithoutBytes) without\n").utf8))
    }

    /// The output directory: an existing writable directory, or a new one in an existing writable directory.
    static func checkOutDirectory(_ path: String, force: Bool) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw QLoraError.invalidArgument("--out \(path) exists and is not a directory") }
            if let reason = OutputFile.cannotCreate(in: path) {
                throw QLoraError.invalidArgument("--out \(path): directory is not writable (\(reason))")
            }
            for file in ["adapter_model.safetensors", "adapter_config.json"] {
                _ = try OutputFile((path as NSString).appendingPathComponent(file), option: "--out", force: force)
            }
        } else {
            let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
            guard fm.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw QLoraError.invalidArgument("--out \(path): directory \(parent) does not exist")
            }
            if let reason = OutputFile.cannotCreate(in: parent) {
                throw QLoraError.invalidArgument("--out \(path): directory \(parent) is not writable (\(reason))")
            }
        }
    }

    var targetModuleList: [String]? {
        targetModules.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
    }

    /// The graph options of the mse path, from this command's graph, --dim and quantization flags.
    var graphOptions: GraphOptions {
        var o = GraphOptions()
        o.graph = graph ?? ""
        o.dims = dims
        o.quantization = quantization
        return o
    }

    /// The trainer options for --steps or --epochs over `batches` batches.
    /// With N ranks an optimizer step takes N × --grad-accum micro-batches (so --epochs counts them all).
    func trainerOptions(batches: Int, threads: Int, ranks: Int) throws -> TrainerOptions {
        var options = try epochs.map { try TrainerOptions(epochs: $0, batches: batches, gradientAccumulation: gradAccum * ranks) } ?? TrainerOptions(steps: steps!)
        guard warmup <= options.steps else { throw QLoraError.invalidArgument("--warmup \(warmup) is more than the run's \(options.steps) steps") }
        options.gradientAccumulation = gradAccum
        options.maxGradNorm = maxGradNorm
        options.schedule = schedule
        options.warmupSteps = warmup
        options.seed = seed
        options.threads = threads
        options.checkpointEvery = checkpointEvery
        options.checkpointDirectory = URL(fileURLWithPath: out)
        options.progress = true
        options.overlapReduction = !noOverlap
        options.bucketBytes = try ByteSize.parse(bucketSize, option: "--bucket-size")
        guard options.bucketBytes > 0 else { throw QLoraError.invalidArgument("--bucket-size must be > 0 bytes, got \(bucketSize)") }
        return options
    }

    /// Once per run (rank 0): the overlap was asked for but the MPI library cannot give it.
    func noteNoOverlap(_ trainer: Trainer) {
        let c = trainer.collective
        guard c.size > 1, c.rank == 0, trainer.options.overlapReduction, !trainer.overlapsReduction else { return }
        FileHandle.standardError.write(Data("note: the MPI library does not allow calls from a second thread (MPI_THREAD_SERIALIZED not provided): the gradients are reduced after the backward, without overlap\n".utf8))
    }

    /// With N > 1 ranks, the --log-json fields of the reduction: the step's time and how long it
    /// waited after its last backward for the gradients (and losses) to be combined.
    static func reductionFields(_ entry: TrainingStepLog, ranks: Int, overlap: Bool) -> String {
        guard ranks > 1 else { return "" }
        return ", \"step_ms\": \((entry.seconds * 1e4).rounded() / 10), \"reduce_wait_ms\": \((entry.reductionWaitSeconds * 1e4).rounded() / 10), \"overlap\": \(overlap)"
    }

    func train(collective: any Collective) throws {
        try validateOptions()
        let threads = try threadCount(threads)
        // Rank 0 alone writes (--out, --log-json, checkpoints): the other ranks need no writable directory.
        let writes = collective.rank == 0
        if writes { try Self.checkOutDirectory(out, force: force) }
        let logFile = try logJson.flatMap { writes ? try OutputFile($0, option: "--log-json", force: force) : nil }
        if let model {
            try trainCausalLM(model: model, threads: threads, logFile: logFile, collective: collective)
            return
        }
        let weights = self.weights!
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: graphOptions.graph), dims: graphOptions.dimValues())
        guard def.outputs.count == 1 else {
            throw QLoraError.invalidArgument("train needs a graph with one output (the prediction); \(graphOptions.graph) has \(def.outputs.count)")
        }
        let outputName = def.outputs[0].name
        let dataFile = try SafeTensorsFile(url: URL(fileURLWithPath: data))
        var all: [String: Tensor] = [:]
        for i in def.inputs {
            guard dataFile.contains(i.name) else {
                throw QLoraError.missingTensor(file: data, name: i.name, neededBy: "input '\(i.name)' \(i.shape) of the graph \(def.name)",
                                               suggestions: [])
            }
            all[i.name] = try dataFile.tensor(i.name)
        }
        guard dataFile.contains("target") else {
            throw QLoraError.missingTensor(file: data, name: "target", neededBy: "the mse loss (shaped like the graph's output '\(outputName)')",
                                           suggestions: [])
        }
        all["target"] = try dataFile.tensor("target")
        for name in dataFile.names where all[name] == nil {
            FileHandle.standardError.write(Data("note: \(data) has tensor '\(name)', which is not an input of \(def.name) nor 'target'; ignored\n".utf8))
        }
        let batches = try TensorBatches(all, batchSize: batchSize, lossKey: "target", source: data)
        if batches.droppedRows > 0 {
            FileHandle.standardError.write(Data("note: \(batches.rows) rows in batches of \(batches.batchSize): \(batches.droppedRows) rows per epoch are left out (drop_last)\n".utf8))
        }
        let first = try batches.batch(0)
        var feedShapes = first.feeds.mapValues(\.shape)
        let targetShape = feedShapes.removeValue(forKey: "target")!

        let start = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
        var fresh = QLoraConfig()
        if let start {
            fresh.rank = start.config.r
            fresh.alpha = Float(start.config.loraAlpha)
            fresh.useRSLoRA = start.config.useRSLoRA
        } else {
            fresh.rank = rank ?? fresh.rank
            fresh.alpha = alpha.map(Float.init) ?? fresh.alpha
            fresh.useRSLoRA = rslora
        }
        try fresh.validate()
        // Which linears train: the adapter config's targets, --target-modules, or every linear.
        let targets: [String]? = start.flatMap { $0.config.targetModules.isEmpty ? nil : $0.config.targetModules } ?? targetModuleList
        var loadOptions = GraphLoadOptions(inputShapes: feedShapes, adapter: start, seed: seed, freshLora: fresh)
        let dropoutContext = try dropout.flatMap { $0 > 0 ? try LoraDropout(probability: $0, seed: seed) : nil }
        loadOptions.dropout = dropoutContext
        loadOptions.dropoutTargets = targets
        let loaded = try graphOptions.load(weights: weights, threads: threads, options: loadOptions)
        let g = loaded.graph
        guard let prediction = g.output(named: outputName) else {
            throw QLoraError.invalidArgument("the graph \(def.name) has no output '\(outputName)'")
        }
        guard targetShape == prediction.shape else {
            throw QLoraError.invalidArgument("'target' in \(data) has shape \(targetShape) per batch, but the graph's output '\(outputName)' has shape \(prediction.shape)")
        }
        let linears = loaded.layers.keys.sorted()
        guard !linears.isEmpty else { throw QLoraError.invalidArgument("the graph \(def.name) has no linear layer to train") }
        let modules = targets.map { t in linears.filter { LoraAdapterConfig.matches($0, targets: t) } } ?? linears
        if let targets {
            for t in targets where !linears.contains(where: { LoraAdapterConfig.matches($0, targets: [t]) }) {
                throw QLoraError.invalidArgument("target module '\(t)' matches no linear of \(def.name) (linears: \(linears.joined(separator: ", ")))")
            }
        }
        let store = try ParameterStore(gathering: modules.flatMap { loaded.layers[$0]!.trainableParameters })
        let method: Optimizer.Method = optimizer == .sgd ? .sgd(learningRate: lr, momentum: momentum ?? 0)
                                                        : .adamW(learningRate: lr, weightDecay: weightDecay ?? 0.01)
        let opt = try Optimizer(method, parameters: store)
        let lossValue = try g.mseLoss(prediction, target: g.input("target", shape: targetShape), label: "loss")
        g.output("loss", lossValue)
        try g.backward(from: lossValue, parameters: store)
        let plan = try g.compile(try compileOptions(threads: threads))
        if writes { Self.noteCheckpointing(plan) }

        let options = try trainerOptions(batches: batches.count, threads: threads, ranks: collective.size)
        let trainer = try Trainer(step: PlanTrainingStep(plan: plan, parameters: store, lossOutput: "loss"), batches: batches,
                                  optimizer: opt, dropout: dropoutContext, options: options)
        trainer.collective = collective
        noteNoOverlap(trainer)
        let config = adapterConfig(start: start, fresh: fresh, modules: modules)
        let writeAdapter: (URL) throws -> Void = { dir in
            var tensors: [String: (a: Tensor, b: Tensor)] = [:]
            for m in modules { tensors[m] = loaded.layers[m]!.loraWeights }
            try LoraAdapter(config: config, weights: tensors).write(to: dir)
        }
        trainer.writeAdapter = writeAdapter
        if checkpointEvery != nil && writes { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        if let resume {
            try trainer.resume(from: URL(fileURLWithPath: resume))
            if writes { FileHandle.standardError.write(Data("resumed from \(resume) at step \(trainer.completedSteps)\n".utf8)) }
        }

        var log: FileHandle?
        var logTemp: String?
        if let logFile {
            let temp = logFile.path + ".tmp-\(getpid())"
            guard FileManager.default.createFile(atPath: temp, contents: nil), let h = FileHandle(forWritingAtPath: temp) else {
                throw QLoraError.invalidArgument("--log-json \(logFile.path): cannot create \(temp)")
            }
            log = h
            logTemp = temp
        }
        defer { if let logTemp { try? log?.close(); unlink(logTemp) } }
        var firstLoss: Float?, lastLoss: Float = 0
        let trainStart = DispatchTime.now().uptimeNanoseconds
        try trainer.run { entry in
            if firstLoss == nil { firstLoss = entry.loss }
            lastLoss = entry.loss
            if let log {
                let line = "{\"step\": \(entry.step), \"loss\": \(entry.loss), \"lr\": \(entry.learningRate), \"grad_norm\": \(entry.gradNorm), \"tokens_per_s\": \((entry.tokensPerSecond * 10).rounded() / 10), \"ranks\": \(collective.size)" + Self.reductionFields(entry, ranks: collective.size, overlap: trainer.overlapsReduction) + "}\n"
                try log.write(contentsOf: Data(line.utf8))
            }
        }
        let totalSeconds = Double(DispatchTime.now().uptimeNanoseconds - trainStart) / 1e9
        guard writes else { return }
        try writeAdapter(URL(fileURLWithPath: out))
        if let log, let logTemp, let logFile {
            try log.synchronize()
            guard rename(logTemp, logFile.path) == 0 else {
                throw QLoraError.invalidArgument("--log-json \(logFile.path): cannot rename \(logTemp) to it")
            }
        }
        let ran = firstLoss.map { "loss \($0) → \(lastLoss)" } ?? "nothing left to run"
        let on = collective.size > 1 ? " on \(collective.size) ranks" : ""
        print("trained \(modules.count) LoRA module\(modules.count == 1 ? "" : "s") (r = \(config.r)) to step \(trainer.completedSteps)\(on) in \(String(format: "%.2f", totalSeconds)) s: \(ran); wrote \(out)")
    }

    /// The adapter's config: the starting adapter's (with any trained module it missed added to the
    /// targets), or PEFT's fields for the new adapters.
    func adapterConfig(start: LoraAdapter?, fresh: QLoraConfig, modules: [String]) -> LoraAdapterConfig {
        if let start {
            var config = start.config
            if !config.targetModules.isEmpty {
                for m in modules where !config.targets(m) { config.targetModules.append(Self.leafName(m)) }
            }
            return config
        }
        var targets: [String] = []
        for m in modules where !targets.contains(Self.leafName(m)) { targets.append(Self.leafName(m)) }
        return LoraAdapterConfig(r: fresh.rank, loraAlpha: alpha ?? Double(fresh.alpha), useRSLoRA: fresh.useRSLoRA, targetModules: targets)
    }

    static func leafName(_ module: String) -> String { module.split(separator: ".").last.map(String.init) ?? module }
}
