import ArgumentParser
import Foundation
import QLoRA

/// `qlora quantize IN -o OUT`: a plain safetensors checkpoint to the bitsandbytes 4-bit layout.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a safetensors checkpoint to the bitsandbytes 4-bit layout.",
        discussion: """
            Quantizes every 2-D floating-point tensor named *.weight, except embeddings (embed_tokens), \
            lm_head and norms unless --include is given; copies every other tensor unchanged.
            """)

    @Argument(help: "The input safetensors file.")
    var input: String

    @Option(name: .shortAndLong, help: "The output safetensors file (written atomically).")
    var output: String

    @OptionGroup var quantization: QuantizationOptions

    @Option(help: "Quantize only tensors whose name contains a match of this regex (replaces the default exclusions).")
    var include: String?

    @Option(help: "Never quantize tensors whose name contains a match of this regex.")
    var exclude: String?

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    func run() throws {
        let bar = ProgressBar()
        do {
            var options = try quantization.options(threads: threadCount(threads))
            options.include = include
            options.exclude = exclude
            let summary = try CheckpointConversion.quantize(
                input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), options: options,
                progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            let dq = options.doubleQuant ? "double quant" : "f32 absmax"
            print("quantized \(summary.tensorsConverted) tensors (\(summary.convertedParameters) parameters, \(options.quantType.rawValue), block \(options.blockSize), \(dq)); copied \(summary.tensorsCopied)")
            print("quantized tensors: \(summary.convertedBytesBefore) -> \(summary.convertedBytesAfter) bytes, \(String(format: "%.3f", summary.bitsPerParameter)) bits per parameter")
            print("file: \(summary.fileBytesBefore) -> \(summary.fileBytesAfter) bytes, wrote \(output)")
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}

/// Validates --threads (nil: all available cores).
func threadCount(_ threads: Int?) throws -> Int {
    guard let threads else { return Runtime.defaultThreads }
    guard threads > 0 else { throw QLoraError.invalidArgument("--threads must be > 0, got \(threads)") }
    return threads
}
