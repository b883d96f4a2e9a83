import ArgumentParser
import Foundation
import QLoRA

/// `qlora chat --model M`: an interactive chat in the terminal (or from a pipe: one user message
/// per line). The answers go to stdout, everything else (banner, prompt, notices) to stderr.
struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a Llama model in the terminal (history kept; /reset, /exit, Ctrl-D).",
        discussion: """
            Each line you type is a user message; the whole conversation is rendered by the model's chat template \\
            and the answer streams to stdout (the KV cache is reused for the part of the conversation already \\
            computed). /reset forgets the history, /exit or Ctrl-D (end of input) ends. When the conversation \\
            outgrows --context, the oldest exchanges are dropped with a notice. The banner, the "> " prompt and \\
            notices go to stderr, so piping works:
              printf 'Hi!\\nWhat is 2+2?\\n' | qlora chat --model models/SmolLM2-135M-Instruct.Q4_1.gguf
            """)

    @Option(help: "A Hugging Face model directory or a llama GGUF file (its tokenizer and chat template are used).")
    var model: String

    @Option(help: "A PEFT LoRA adapter directory.")
    var adapter: String?

    @Option(help: "A system message rendered first in every conversation.")
    var system: String?

    @Option(parsing: .unconditional, help: "At most this many tokens per answer.")
    var maxNewTokens: Int = 256

    @Option(parsing: .unconditional, help: "Tokens of context (prompt + history + answer) the KV cache holds.")
    var context: Int = 2048

    @OptionGroup(title: "Sampling")
    var sampling: SamplingOptions

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @OptionGroup(title: "Quantization at load (f32/f16/bf16 or GGUF weights)")
    var quantization: QuantizationOptions

    func run() throws {
        do {
            let threads = try threadCount(threads)
            guard maxNewTokens >= 1 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 1, got \(maxNewTokens)") }
            guard context >= 2 else { throw QLoraError.invalidArgument("--context must be >= 2, got \(context)") }
            let sampler = try sampling.sampler()
            let (llama, tokenizer) = try loadTextModel(model, adapter: adapter, quantization: quantization.options(threads: threads))
            let session = try ChatSession(model: llama, tokenizer: tokenizer, system: system, capacity: context, sampler: sampler,
                                          options: CompileOptions(threads: threads))
            writeToStderr("Chatting with \(model) (\(llama.config.layers) layers, context \(context) tokens). /reset forgets the conversation, /exit or Ctrl-D ends.\n")
            while true {
                writeToStderr("> ")
                guard let line = readLine(strippingNewline: true) else { writeToStderr("\n"); break }
                let message = line.trimmingCharacters(in: .whitespaces)
                if message.isEmpty { continue }
                if message == "/exit" { break }
                if message == "/reset" {
                    session.reset()
                    writeToStderr("(conversation reset)\n")
                    continue
                }
                do {
                    let r = try session.reply(to: line, maxNewTokens: maxNewTokens, onNotice: { writeToStderr("(\($0))\n") }, onText: writeNow)
                    writeNow("\n")
                    let o = r.output
                    writeToStderr(String(format: "(%d tokens, %d of the prompt's %d from the cache; decode %.1f tokens/s)\n",
                                         o.ids.count, o.reusedTokens, o.promptTokens, o.decodeTokensPerSecond))
                } catch let e as QLoraError {
                    // A message that cannot be answered (too long for the context): say so, keep chatting.
                    writeNow("\n")
                    writeToStderr("error: \(e)\n")
                }
            }
        } catch {
            throw fail(error)
        }
    }
}
