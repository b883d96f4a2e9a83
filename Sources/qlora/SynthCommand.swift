import ArgumentParser
import Foundation
import QLoRA

/// `qlora synth --config config.json -o DIR`: a random-weight Llama model in the 4-bit layout.
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a random-weight Llama model of any shape directly in the bitsandbytes 4-bit layout.",
        discussion: """
            Reads a transformers Llama config.json (hidden_size, intermediate_size, num_hidden_layers, \\
            num_attention_heads, num_key_value_heads, vocab_size, ...) and writes DIR with config.json (plus \\
            quantization_config) and model.safetensors: random 4-bit codes and absmax for the projections, \\
            random embeddings, unit norms. Streams tensor by tensor; the same --seed gives the same bytes. \\
            For benchmarks (a Llama-2-7B shape is about 3.9 GB).
            """)

    @Option(help: "A transformers Llama config.json.")
    var config: String

    @Option(name: .shortAndLong, help: "The output model directory (written atomically).")
    var output: String

    @Option(parsing: .unconditional, help: "Random seed (the same seed and options give the same files).")
    var seed: UInt64 = 0

    @OptionGroup var quantization: QuantizationOptions

    @Option(help: "bnb_4bit_compute_dtype recorded in config.json: float32, float16 or bfloat16.")
    var computeDType: String = "float32"

    @Flag(help: "Replace an existing output directory.")
    var force = false

    func run() throws {
        let bar = ProgressBar()
        do {
            let options = try quantization.options(threads: Runtime.defaultThreads)
            let summary = try LlamaSynth.write(config: URL(fileURLWithPath: config), output: URL(fileURLWithPath: output), seed: seed,
                                               options: options, computeDType: computeDType, replace: force,
                                               progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            print("synthesized \(summary.tensorsConverted) 4-bit projections (\(summary.convertedParameters) parameters, \(options.quantType.rawValue), block \(options.blockSize)) and \(summary.tensorsCopied) other tensors")
            print("model.safetensors: \(summary.fileBytesAfter) bytes; wrote \(output)")
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}
