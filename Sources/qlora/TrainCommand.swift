import ArgumentParser
import Foundation
import QLoRA
#if canImport(Glibc)
import Glibc
#endif

enum TrainLoss: String, ExpressibleByArgument { case mse }
enum TrainOptimizer: String, ExpressibleByArgument { case adamw, sgd }

/// `qlora train GRAPH --weights W --data D --steps N --optimizer adamw|sgd --lr LR --out DIR`:
/// LoRA adapters on every linear of the graph, trained on one batch with one compiled plan
/// (forward + mse + backward + optimizer update) run N times; the result is a PEFT adapter directory.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train LoRA adapters on every linear of a graph (frozen 4-bit weights) and save a PEFT adapter.",
        discussion: """
            --data holds the graph's inputs by name plus 'target', shaped like the graph's (single) output; all of it \
            is one batch. One plan (forward, mse loss, backward, optimizer step) is compiled once and run --steps \
            times. With --adapter, training starts from that PEFT adapter (its config sets r, alpha and rsLoRA); \
            otherwise every linear gets a fresh LoRA (A Kaiming-uniform from --seed, B = 0). --out receives \
            adapter_model.safetensors and adapter_config.json (each written atomically), which `qlora run --adapter` \
            loads. --log-json writes one JSON object per step: step, loss, lr, grad_norm (global L2 norm of the \
            gradients before the update), tokens_per_s.
            """)

    @OptionGroup var graphOptions: GraphOptions

    @Option(help: "The safetensors checkpoint (bitsandbytes 4-bit, or f32/f16/bf16 quantized at load); frozen.")
    var weights: String

    @Option(help: "A safetensors file with the graph's inputs by name and 'target' (the graph output's shape).")
    var data: String

    @Option(help: "The loss: mse (mean squared error against 'target').")
    var loss: TrainLoss = .mse

    @Option(help: "Optimizer steps (each one run of the training plan over the whole batch).")
    var steps: Int

    @Option(help: "adamw (torch.optim.AdamW, betas 0.9/0.999, eps 1e-8) or sgd (torch.optim.SGD).")
    var optimizer: TrainOptimizer

    @Option(help: "The learning rate (constant).")
    var lr: Float

    @Option(help: "SGD momentum (default 0: p -= lr·g).")
    var momentum: Float?

    @Option(help: "AdamW decoupled weight decay (default 0.01, torch's).")
    var weightDecay: Float?

    @Option(help: "Start from this PEFT LoRA adapter directory (its config sets r, alpha, rsLoRA).")
    var adapter: String?

    @Option(help: "LoRA rank of new adapters (default 8).")
    var rank: Int?

    @Option(help: "LoRA alpha of new adapters (default 16; scaling alpha / r).")
    var alpha: Double?

    @Flag(help: "rsLoRA scaling alpha / √r for new adapters.")
    var rslora = false

    @Option(help: "Seed of the new adapters' A initialisation.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @Option(help: "Write one JSON object per step to this file (JSON lines).")
    var logJson: String?

    @Option(help: "The adapter directory to write (created if missing).")
    var out: String

    @Flag(help: "Replace read-only output files.")
    var force = false

    func run() throws {
        do {
            try train()
        } catch {
            throw fail(error)
        }
    }

    /// Checks the option values before any work is done.
    func validateOptions() throws {
        guard steps > 0 else { throw QLoraError.invalidArgument("--steps must be > 0, got \(steps)") }
        guard lr.isFinite, lr > 0 else { throw QLoraError.invalidArgument("--lr must be a finite number > 0, got \(lr)") }
        if let momentum {
            guard optimizer == .sgd else { throw QLoraError.invalidArgument("--momentum applies to --optimizer sgd, not \(optimizer.rawValue)") }
            guard momentum.isFinite, momentum >= 0 else { throw QLoraError.invalidArgument("--momentum must be a finite number >= 0, got \(momentum)") }
        }
        if let weightDecay {
            guard optimizer == .adamw else { throw QLoraError.invalidArgument("--weight-decay applies to --optimizer adamw, not \(optimizer.rawValue)") }
            guard weightDecay.isFinite, weightDecay >= 0 else { throw QLoraError.invalidArgument("--weight-decay must be a finite number >= 0, got \(weightDecay)") }
        }
        if adapter != nil, rank != nil || alpha != nil || rslora {
            throw QLoraError.invalidArgument("--adapter sets r, alpha and rsLoRA from its config; drop --rank, --alpha and --rslora")
        }
        if let rank, rank <= 0 { throw QLoraError.invalidArgument("--rank must be > 0, got \(rank)") }
        if let alpha, !(alpha.isFinite && alpha >= 0) { throw QLoraError.invalidArgument("--alpha must be a finite number >= 0, got \(alpha)") }
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

    func train() throws {
        try validateOptions()
        let threads = try threadCount(threads)
        try Self.checkOutDirectory(out, force: force)
        let logFile = try logJson.map { try OutputFile($0, option: "--log-json", force: force) }
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: graphOptions.graph), dims: graphOptions.dimValues())
        guard def.outputs.count == 1 else {
            throw QLoraError.invalidArgument("train needs a graph with one output (the prediction); \(graphOptions.graph) has \(def.outputs.count)")
        }
        let outputName = def.outputs[0].name
        let dataFile = try SafeTensorsFile(url: URL(fileURLWithPath: data))
        var feeds: [String: Tensor] = [:]
        for i in def.inputs {
            guard dataFile.contains(i.name) else {
                throw QLoraError.missingTensor(file: data, name: i.name, neededBy: "input '\(i.name)' \(i.shape) of the graph \(def.name)",
                                               suggestions: [])
            }
            feeds[i.name] = try dataFile.tensor(i.name)
        }
        guard dataFile.contains("target") else {
            throw QLoraError.missingTensor(file: data, name: "target", neededBy: "the mse loss (shaped like the graph's output '\(outputName)')",
                                           suggestions: [])
        }
        let target = try dataFile.tensor("target")
        for name in dataFile.names where feeds[name] == nil && name != "target" {
            FileHandle.standardError.write(Data("note: \(data) has tensor '\(name)', which is not an input of \(def.name) nor 'target'; ignored\n".utf8))
        }

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
        let loaded = try graphOptions.load(weights: weights, threads: threads,
                                           options: GraphLoadOptions(inputShapes: feeds.mapValues(\.shape), adapter: start, seed: seed, freshLora: fresh))
        let g = loaded.graph
        guard let prediction = g.output(named: outputName) else {
            throw QLoraError.invalidArgument("the graph \(def.name) has no output '\(outputName)'")
        }
        guard target.shape == prediction.shape else {
            throw QLoraError.invalidArgument("'target' in \(data) has shape \(target.shape), but the graph's output '\(outputName)' has shape \(prediction.shape)")
        }
        let modules = loaded.layers.keys.sorted()
        guard !modules.isEmpty else { throw QLoraError.invalidArgument("the graph \(def.name) has no linear layer to train") }
        let store = try ParameterStore(gathering: modules.flatMap { loaded.layers[$0]!.trainableParameters })
        let method: Optimizer.Method = optimizer == .sgd ? .sgd(learningRate: lr, momentum: momentum ?? 0)
                                                        : .adamW(learningRate: lr, weightDecay: weightDecay ?? 0.01)
        let opt = try Optimizer(method, parameters: store)
        let lossValue = try g.mseLoss(prediction, target: g.input("target", shape: target.shape), label: "loss")
        g.output("loss", lossValue)
        try g.backward(from: lossValue, optimizer: opt)
        let plan = try g.compile(CompileOptions(threads: threads))
        feeds["target"] = target

        let firstShape = loaded.inputs.first?.shape ?? []
        let tokens = max(1, firstShape.dropLast().reduce(1, *))
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
        let every = max(1, steps / 20)
        var first: Float = 0, last: Float = 0
        let trainStart = DispatchTime.now().uptimeNanoseconds
        for step in 1...steps {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let result = try plan.run(feeds)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let loss = result["loss"]!.scalars[0]
            var sumSquares = 0.0
            for v in store.flatGradients { sumSquares += Double(v) * Double(v) }
            let gradNorm = sumSquares.squareRoot()
            guard loss.isFinite, gradNorm.isFinite else {
                throw QLoraError.invalidArgument("training diverged at step \(step): loss \(loss), grad_norm \(gradNorm) (try a smaller --lr than \(lr)); nothing written")
            }
            if step == 1 { first = loss }
            last = loss
            let tokensPerSecond = seconds > 0 ? Double(tokens) / seconds : 0
            if step == 1 || step == steps || step % every == 0 {
                FileHandle.standardError.write(Data("step \(step)/\(steps) loss \(loss) grad_norm \(Float(gradNorm))\n".utf8))
            }
            if let log {
                let line = "{\"step\": \(step), \"loss\": \(loss), \"lr\": \(lr), \"grad_norm\": \(gradNorm), \"tokens_per_s\": \((tokensPerSecond * 10).rounded() / 10)}\n"
                try log.write(contentsOf: Data(line.utf8))
            }
        }
        let totalSeconds = Double(DispatchTime.now().uptimeNanoseconds - trainStart) / 1e9

        // The adapter: every trained module, PEFT's layout and config.
        var config: LoraAdapterConfig
        if let start {
            config = start.config
            if !config.targetModules.isEmpty {
                for m in modules where !config.targets(m) { config.targetModules.append(Self.leafName(m)) }
            }
        } else {
            var targets: [String] = []
            for m in modules where !targets.contains(Self.leafName(m)) { targets.append(Self.leafName(m)) }
            config = LoraAdapterConfig(r: fresh.rank, loraAlpha: alpha ?? Double(fresh.alpha), useRSLoRA: fresh.useRSLoRA, targetModules: targets)
        }
        var tensors: [String: (a: Tensor, b: Tensor)] = [:]
        for m in modules { tensors[m] = loaded.layers[m]!.loraWeights }
        try LoraAdapter(config: config, weights: tensors).write(to: URL(fileURLWithPath: out))
        if let log, let logTemp, let logFile {
            try log.synchronize()
            guard rename(logTemp, logFile.path) == 0 else {
                throw QLoraError.invalidArgument("--log-json \(logFile.path): cannot rename \(logTemp) to it")
            }
        }
        print("trained \(modules.count) LoRA module\(modules.count == 1 ? "" : "s") (r = \(config.r)) for \(steps) steps in \(String(format: "%.2f", totalSeconds)) s: loss \(first) → \(last); wrote \(out)")
    }

    static func leafName(_ module: String) -> String { module.split(separator: ".").last.map(String.init) ?? module }
}
