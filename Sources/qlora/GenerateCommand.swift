import ArgumentParser
import Foundation
import QLoRA

/// `qlora generate --model M --prompt-ids 1,2,3`: token ids in, new token ids out (KV cache:
/// prefill, then one token per step).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate token ids with a Llama model (KV cache: prefill, then one token per step).",
        discussion: """
            Greedy by default; --temperature T > 0 samples (with --top-k / --top-p and --seed: the same seed gives the \
            same tokens). Stops at the model's eos token (included) or after --max-new-tokens. --format json prints \
            {"prompt_ids": [...], "ids": [...], "prefill_tokens_per_s": x, "decode_tokens_per_s": y}.
            """)

    @Option(help: "A Hugging Face model directory or a llama GGUF file.")
    var model: String

    @Option(help: "A PEFT LoRA adapter directory.")
    var adapter: String?

    @Option(help: "The prompt's token ids, comma-separated (e.g. 1,9690,198).")
    var promptIds: String

    @Option(parsing: .unconditional, help: "At most this many new tokens.")
    var maxNewTokens: Int = 32

    @Option(parsing: .unconditional, help: "Sampling temperature (0: greedy).")
    var temperature: Float = 0

    @Option(parsing: .unconditional, help: "Sample among the K most likely tokens.")
    var topK: Int?

    @Option(parsing: .unconditional, help: "Sample among the most likely tokens whose probability reaches P.")
    var topP: Float?

    @Option(parsing: .unconditional, help: "Seed of the sampler.")
    var seed: UInt64 = 0

    @Option(help: "Output: text or json.")
    var format: String = "text"

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @OptionGroup(title: "Quantization at load (f32/f16/bf16 or GGUF weights)")
    var quantization: QuantizationOptions

    func run() throws {
        do {
            guard format == "text" || format == "json" else { throw QLoraError.invalidArgument("--format must be text or json, got \"\(format)\"") }
            let threads = try threadCount(threads)
            let prompt = try promptIds.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int32 in
                guard let v = Int32(part.trimmingCharacters(in: .whitespaces)) else {
                    throw QLoraError.invalidArgument("--prompt-ids expects comma-separated token ids, got \"\(promptIds)\"")
                }
                return v
            }
            let sampler = TokenSampler(temperature: temperature, topK: topK, topP: topP, seed: seed)
            try sampler.validate()
            guard maxNewTokens >= 0 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 0, got \(maxNewTokens)") }
            let adapterWeights = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
            let llama = try LlamaModel.load(URL(fileURLWithPath: model), adapter: adapterWeights, quantization: quantization.options(threads: threads))
            let generator = try LlamaGenerator(model: llama, capacity: prompt.count + max(maxNewTokens, 1), options: CompileOptions(threads: threads))
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
}
