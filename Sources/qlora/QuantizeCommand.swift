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

    @Option(help: "4-bit data type: nf4 or fp4.")
    var quantType: String = "nf4"

    @Option(help: "Elements per absmax block (a power of two from 32 to 4096).")
    var blockSize: Int = 64

    @Flag(inversion: .prefixedNo, help: "Quantize the absmax statistics to 8 bits (bitsandbytes compress_statistics).")
    var doubleQuant = true

    @Option(help: "Quantize only tensors whose name contains a match of this regex (replaces the default exclusions).")
    var include: String?

    @Option(help: "Never quantize tensors whose name contains a match of this regex.")
    var exclude: String?

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    func run() throws {
        let bar = ProgressBar()
        do {
            guard let type = QuantType(rawValue: quantType) else {
                throw QLoraError.invalidArgument("--quant-type must be nf4 or fp4, got \"\(quantType)\"")
            }
            var options = QuantizeOptions()
            options.quantType = type
            options.blockSize = blockSize
            options.doubleQuant = doubleQuant
            options.include = include
            options.exclude = exclude
            options.threads = try threadCount(threads)
            let summary = try CheckpointConversion.quantize(
                input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), options: options,
                progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            let dq = doubleQuant ? "double quant" : "f32 absmax"
            print("quantized \(summary.tensorsConverted) tensors (\(summary.convertedParameters) parameters, \(type.rawValue), block \(blockSize), \(dq)); copied \(summary.tensorsCopied)")
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
