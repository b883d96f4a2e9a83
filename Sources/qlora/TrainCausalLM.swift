import ArgumentParser
import Foundation
import QLoRA
#if canImport(Glibc)
import Glibc
#endif

/// `qlora train [Graphs/llama.json] --model DIR|FILE.gguf --data D ...`: QLoRA on a Llama-family
/// causal LM (the model `LlamaModel` records is the one Graphs/llama.json describes; tests check
/// they are bitwise equal), data from a JSONL file (tokenised with the model's tokenizer and chat
/// template, prompt-masked) or token-id tensors, through the library's `Trainer`.
extension TrainCommand {
    func trainCausalLM(model path: String, threads: Int, logFile: OutputFile?, collective: any Collective) throws {
        let writes = collective.rank == 0
        let q = try quantization.options(threads: threads)
        let checkpoint = try LlamaCheckpoint(url: URL(fileURLWithPath: path), quantization: q)
        if let graph {
            let def = try GraphDefinition.load(url: URL(fileURLWithPath: graph), dims: checkpoint.graphDims)
            guard def.name == "llama" else {
                throw QLoraError.invalidArgument("with --model, train runs the Llama causal LM (Graphs/llama.json); \(graph) is the graph '\(def.name)'")
            }
        }
        let start = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
        var fresh = QLoraConfig()
        fresh.rank = rank ?? fresh.rank
        fresh.alpha = alpha.map(Float.init) ?? fresh.alpha
        fresh.useRSLoRA = rslora
        try fresh.validate()
        let targets = targetModuleList ?? fresh.targetModules
        for t in targets where !LlamaConfig.projections.contains(where: { $0.hasSuffix("." + t) || $0 == t }) {
            throw QLoraError.invalidArgument("target module '\(t)' matches no Llama projection (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")
        }
        let llama = try LlamaModel(checkpoint: checkpoint, adapter: start, loraTargets: start == nil ? targets : [], freshLora: fresh, seed: seed)
        let dropoutContext = try dropout.flatMap { $0 > 0 ? try LoraDropout(probability: $0, seed: seed) : nil }
        let step = try CausalLMTrainingStep(model: llama, options: try compileOptions(threads: threads), dropout: dropoutContext)

        let batches = try causalLMBatches(data, model: path, llama: llama, shuffle: true)
        let validBatches = try valid.map { try causalLMBatches($0, model: path, llama: llama, shuffle: false) }
        let method: Optimizer.Method = optimizer == .sgd ? .sgd(learningRate: Double(lr), momentum: Double(momentum ?? 0))
                                                        : .adamW(learningRate: Double(lr), weightDecay: Double(weightDecay ?? 0.01))
        let opt = try Optimizer(method, parameters: step.parameters)
        if collective.rank == 0, let first = batches.batches.first?.ids["input_ids"]?.shape { Self.noteCheckpointing(try step.plan(shape: first)) }
        let options = try trainerOptions(batches: batches.count, threads: threads, ranks: collective.size)
        let trainer = try Trainer(step: step, batches: batches, optimizer: opt, dropout: dropoutContext, options: options)
        trainer.collective = collective
        noteNoOverlap(trainer)
        let modules = llama.loraLayers.map(\.name)
        let config = start?.config ?? LoraAdapterConfig(r: fresh.rank, loraAlpha: alpha ?? Double(fresh.alpha), useRSLoRA: fresh.useRSLoRA,
                                                        targetModules: targets)
        let writeAdapter: (URL) throws -> Void = { dir in
            var tensors: [String: (a: Tensor, b: Tensor)] = [:]
            for layer in llama.loraLayers { tensors[layer.name] = layer.loraWeights }
            try LoraAdapter(config: config, weights: tensors).write(to: dir)
        }
        trainer.writeAdapter = writeAdapter
        if checkpointEvery != nil && writes { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
        if let resume {
            try trainer.resume(from: URL(fileURLWithPath: resume))
            if writes { FileHandle.standardError.write(Data("resumed from \(resume) at step \(trainer.completedSteps)\n".utf8)) }
        }
        let tokens = batches.batches.reduce(0) { $0 + $1.tokens }
        let ranksNote = collective.size > 1 ? ", \(collective.size) ranks" : ""
        if writes {
            FileHandle.standardError.write(Data(("training \(modules.count) LoRA modules (r = \(config.r)) of \(path): \(batches.count) batch\(batches.count == 1 ? "" : "es"), "
                + "\(tokens) tokens per epoch, \(options.steps) steps, \(threads) thread\(threads == 1 ? "" : "s")\(ranksNote)\n").utf8))
        }

        let log = try logFile.map { try JSONLinesLog($0.path) }
        let every = evalEvery ?? max(1, options.steps / 10)
        var firstLoss: Float?, lastLoss: Float = 0, lastValid: Double?
        let t0 = DispatchTime.now().uptimeNanoseconds
        try trainer.run { entry in
            if firstLoss == nil { firstLoss = entry.loss }
            lastLoss = entry.loss
            var line = "{\"step\": \(entry.step), \"loss\": \(entry.loss), \"lr\": \(entry.learningRate), \"grad_norm\": \(entry.gradNorm), \"tokens_per_s\": \((entry.tokensPerSecond * 10).rounded() / 10), \"ranks\": \(collective.size)" + Self.reductionFields(entry, ranks: collective.size, overlap: trainer.overlapsReduction)
            guard writes else { return }  // rank 0 alone evaluates and logs
            if let validBatches, entry.step % every == 0 || entry.step == options.steps {
                let v = try step.evaluate(validBatches)
                lastValid = v
                line += ", \"valid_loss\": \(Float(v))"
                FileHandle.standardError.write(Data("step \(entry.step): valid loss \(String(format: "%.4f", v))\n".utf8))
            }
            try log?.append(line + "}")
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard writes else { return }
        try writeAdapter(URL(fileURLWithPath: out))
        try log?.commit()
        let ran = firstLoss.map { "loss \($0) → \(lastLoss)" } ?? "nothing left to run"
        let validNote = lastValid.map { String(format: ", valid loss %.4f", $0) } ?? ""
        print("trained \(modules.count) LoRA modules (r = \(config.r)) to step \(trainer.completedSteps) in \(String(format: "%.1f", seconds)) s: \(ran)\(validNote); wrote \(out)")
    }

    /// Batches from a JSONL file (tokenised, prompt-masked, padded to the longest per batch, or with
    /// --packing packed into rows of --seq-len tokens) or a safetensors file with `input_ids` (I64/I32 [rows, seq]) and optional `labels`.
    func causalLMBatches(_ file: String, model: String, llama: LlamaModel, shuffle: Bool) throws -> CausalLMBatches {
        guard FileManager.default.fileExists(atPath: file) else { throw QLoraError.io(file: file, reason: "no such file") }
        if file.hasSuffix(".jsonl") || file.hasSuffix(".json") {
            let tokenizer = try BPETokenizer.load(path: model)
            var o = DatasetOptions(maskPrompt: !noMaskPrompt)
            o.maxLength = seqLen
            let examples = try JSONLDataset.load(path: file, tokenizer: tokenizer, options: o)
            guard !examples.isEmpty else { throw QLoraError.invalidArgument("\(file) holds no example") }
            let pad = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0
            // Fixed batches (the Trainer shuffles their order per epoch from --seed).
            if packing, let seqLen {
                // Rows are filled in file order; --batch-size counts rows.
                let it = try BatchIterator(examples: examples, batchSize: batchSize ?? 1, layout: .packed(sequenceLength: seqLen),
                                           padId: pad, seed: seed, shuffle: false)
                return try CausalLMBatches(it.batches(epoch: 0), source: file, packed: true)
            }
            let it = try BatchIterator(examples: examples, batchSize: min(batchSize ?? 1, examples.count), layout: .padToLongest(maxLength: seqLen),
                                       padId: pad, seed: seed, shuffle: false)
            return try CausalLMBatches(it.batches(epoch: 0), source: file)
        }
        let st = try SafeTensorsFile(url: URL(fileURLWithPath: file))
        if packing { throw QLoraError.invalidArgument("--packing applies to JSONL data (\(file) holds token-id tensors)") }
        guard st.contains("input_ids") else {
            throw QLoraError.missingTensor(file: file, name: "input_ids", neededBy: "causal-LM training (token ids [rows, seq])", suggestions: [])
        }
        let ids = try st.intTensor("input_ids")
        let labels = st.contains("labels") ? try st.intTensor("labels") : nil
        return try CausalLMBatches(inputIds: ids, labels: labels, batchSize: batchSize, source: file)
    }
}

/// A JSON-lines file written to a temporary sibling and renamed into place by `commit`.
final class JSONLinesLog {
    let path: String, temp: String
    private let handle: FileHandle
    private var committed = false

    init(_ path: String) throws {
        self.path = path
        temp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: temp, contents: nil), let h = FileHandle(forWritingAtPath: temp) else {
            throw QLoraError.io(file: temp, reason: "cannot create the log's temporary file")
        }
        handle = h
    }

    deinit { if !committed { try? handle.close(); unlink(temp) } }

    func append(_ line: String) throws { try handle.write(contentsOf: Data((line + "\n").utf8)) }

    func commit() throws {
        try handle.synchronize()
        try handle.close()
        guard rename(temp, path) == 0 else { throw QLoraError.io(file: path, reason: "cannot rename \(temp) to it") }
        committed = true
    }
}
