import ArgumentParser
import Foundation
import QLoRA

/// `qlora generate --model M --prompt "text" [--chat]`: text in, text streamed out; or
/// `--prompt-ids 1,2,3`: token ids in, new token ids out (KV cache: prefill, then one token per step).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text (or token ids) with a Llama model (KV cache: prefill, then one token per step).",
        discussion: """
            --prompt "text" is tokenized by the model's own tokenizer (GGUF metadata, or tokenizer.json + \
            tokenizer_config.json in the model directory) and the answer streams to stdout as it is generated. \
            With --chat the prompt is a user message rendered by the model's chat template with the generation \
            prompt (after a --system message when given), and generation also stops at the template's end-of-turn \
            token. --prompt-ids 1,2,3 takes and prints token ids instead.
            Greedy by default; --temperature T > 0 samples (with --top-k / --top-p and --seed: the same seed gives the \
            same tokens). Stops at the model's eos token (included in the ids, not in the text) or after \
            --max-new-tokens. --format json prints {"prompt_ids": [...], "ids": [...], "prefill_tokens_per_s": x, \
            "decode_tokens_per_s": y}, with "text" after "ids" for --prompt.
              qlora generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --chat --prompt "What is 2+2?"
            """)

    @Option(help: "A Hugging Face model directory or a llama GGUF file.")
    var model: String

    @Option(help: "A PEFT LoRA adapter directory.")
    var adapter: String?

    @Option(help: "The prompt's token ids, comma-separated (e.g. 1,9690,198).")
    var promptIds: String?

    @Option(help: "The prompt as text (tokenized by the model's tokenizer).")
    var prompt: String?

    @Flag(help: "With --prompt: render it as a user message with the model's chat template.")
    var chat = false

    @Flag(help: profileHelp)
    var profile = false

    @Option(help: "With --chat: a system message rendered before the prompt.")
    var system: String?

    @Option(parsing: .unconditional, help: "At most this many new tokens.")
    var maxNewTokens: Int = 32

    @OptionGroup(title: "Sampling")
    var sampling: SamplingOptions

    @Option(help: "Output: text or json.")
    var format: String = "text"

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @Option(help: "Arithmetic of the fused kernels and the lm_head: f32, or bf16 (AVX512-BF16 CPUs, f32 elsewhere).")
    var computeType: ComputeType = .float32

    @Flag(help: ieeeDenormalsHelp)
    var ieeeDenormals = false

    @OptionGroup(title: "Quantization at load (f32/f16/bf16 or GGUF weights)")
    var quantization: QuantizationOptions

    func run() throws { try profiled(profile) { try execute() } }

    /// The generation plans' options (every path: ids, prompt text, chat).
    func compileOptions(threads: Int) -> CompileOptions {
        CompileOptions(threads: threads, computeType: computeType, flushDenormals: !ieeeDenormals)
    }

    private func execute() throws {
        do {
            guard format == "text" || format == "json" else { throw QLoraError.invalidArgument("--format must be text or json, got \"\(format)\"") }
            let threads = try threadCount(threads)
            guard (self.promptIds == nil) != (self.prompt == nil) else { throw QLoraError.invalidArgument("give exactly one of --prompt \"text\" and --prompt-ids 1,2,3") }
            if chat && self.prompt == nil { throw QLoraError.invalidArgument("--chat needs --prompt \"text\"") }
            if system != nil && !chat { throw QLoraError.invalidArgument("--system needs --chat") }
            if let text = self.prompt { return try generateText(text, threads: threads) }
            let promptIds = self.promptIds!
            let prompt = try promptIds.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int32 in
                guard let v = Int32(part.trimmingCharacters(in: .whitespaces)) else {
                    throw QLoraError.invalidArgument("--prompt-ids expects comma-separated token ids, got \"\(promptIds)\"")
                }
                return v
            }
            let sampler = try sampling.sampler()
            guard maxNewTokens >= 0 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 0, got \(maxNewTokens)") }
            let adapterWeights = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
            let llama = try LlamaModel.load(URL(fileURLWithPath: model), adapter: adapterWeights, quantization: quantization.options(threads: threads))
            let generator = try LlamaGenerator(model: llama, capacity: prompt.count + max(maxNewTokens, 1), options: compileOptions(threads: threads))
            let r = try generator.generate(prompt: prompt, maxNewTokens: maxNewTokens, sampler: sampler, eos: llama.config.eosTokenIds)
            if format == "json" {
                func list(_ v: [Int32]) -> String { "[" + v.map(String.init).joined(separator: ", ") + "]" }
                print("{\"prompt_ids\": \(list(prompt)), \"ids\": \(list(r.tokens)), \"prefill_tokens_per_s\": \(r.prefillTokensPerSecond), \"decode_tokens_per_s\": \(r.decodeTokensPerSecond)}")
            } else {
                print(r.tokens.map(String.init).joined(separator: ","))
                FileHandle.standardError.write(Data(String(format: "%d new tokens%@; prefill %.1f tokens/s, decode %.1f tokens/s\n", r.tokens.count,
                                                           r.stoppedAtEOS ? " (eos)" : "", r.prefillTokensPerSecond, r.decodeTokensPerSecond).utf8))
            }
        } catch {
            throw fail(error)
        }
    }

    /// `--prompt`: the text is tokenized (or rendered with the chat template), the answer streams.
    func generateText(_ text: String, threads: Int) throws {
        let sampler = try sampling.sampler()
        guard maxNewTokens >= 0 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 0, got \(maxNewTokens)") }
        let (llama, tokenizer) = try loadTextModel(model, adapter: adapter, quantization: quantization.options(threads: threads))
        let json = format == "json"
        // JSON prints one object at the end; text streams each piece as it is decoded.
        let stream: (String) -> Void = { piece in if !json { writeNow(piece) } }
        let promptIds: [Int32], out: TextGenerator.Output
        if chat {
            let template = try tokenizer.parsedChatTemplate()
            let stops = tokenizer.stopTokenIds(modelEOS: llama.config.eosTokenIds, template: template)
            let messages = (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: text)]
            let rendered = try template.render(messages, addGenerationPrompt: true, specialTokens: tokenizer.specialTokenVariables)
            let n = tokenizer.encode(rendered).count
            let generator = try TextGenerator(model: llama, tokenizer: tokenizer, capacity: n + max(maxNewTokens, 1), stopTokenIds: stops,
                                              options: compileOptions(threads: threads))
            let session = try ChatSession(generator: generator, template: template, system: system, sampler: sampler)
            guard maxNewTokens > 0 else {
                return try report(prompt: session.promptIds([ChatMessage(role: "user", content: text)]), ids: [], text: "", stopped: false, rates: (0, 0))
            }
            let r = try session.reply(to: text, maxNewTokens: maxNewTokens, onText: stream)
            promptIds = r.promptIds
            out = r.output
        } else {
            promptIds = tokenizer.encode(text, addSpecialTokens: true).map { Int32($0) }
            let stops = tokenizer.stopTokenIds(modelEOS: llama.config.eosTokenIds, template: nil)
            let generator = try TextGenerator(model: llama, tokenizer: tokenizer, capacity: promptIds.count + max(maxNewTokens, 1),
                                              stopTokenIds: stops, options: compileOptions(threads: threads))
            var s = sampler
            out = try generator.generate(promptIds: promptIds, maxNewTokens: maxNewTokens, sampler: &s, onText: stream)
        }
        try report(prompt: promptIds, ids: out.ids, text: out.text, stopped: out.stoppedAtStopToken,
                   rates: (out.prefillTokensPerSecond, out.decodeTokensPerSecond))
    }

    func report(prompt: [Int32], ids: [Int32], text: String, stopped: Bool, rates: (prefill: Double, decode: Double)) throws {
        if format == "json" {
            let members: [(key: String, value: JSONValue)] = [
                ("prompt_ids", .array(prompt.map { .int(Int($0)) })), ("ids", .array(ids.map { .int(Int($0)) })), ("text", .string(text)),
                ("prefill_tokens_per_s", .number(rates.prefill, text: "\(rates.prefill)")),
                ("decode_tokens_per_s", .number(rates.decode, text: "\(rates.decode)"))]
            writeNow(JSONValue.object(members).pythonDumps() + "\n")
        } else {
            writeNow("\n")
            writeToStderr(String(format: "%d new tokens%@; prefill %.1f tokens/s, decode %.1f tokens/s\n", ids.count,
                                 stopped ? " (eos)" : "", rates.prefill, rates.decode))
        }
    }
}
