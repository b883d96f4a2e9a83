import ArgumentParser
import Foundation
import QLoRA

/// `qlora quantize IN -o OUT`: a plain safetensors checkpoint to the bitsandbytes 4-bit layout, or a
/// whole Llama model (a Hugging Face directory or a GGUF file) to a 4-bit model directory.
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Quantize a safetensors checkpoint or a Llama model (directory or GGUF) to the bitsandbytes 4-bit layout.",
        discussion: """
            With a model directory or a .gguf file, writes the directory OUT that transformers + \
            bitsandbytes load as is: config.json with quantization_config, model.safetensors with the 7 \
            projections of every layer in 4 bits (embeddings, norms, lm_head unquantized), tokenizer files \
            (converted from a GGUF's metadata for gpt2 vocabularies) and generation_config.json. \
            With a safetensors file: \
            Quantizes every 2-D floating-point tensor named *.weight, except embeddings (embed_tokens), \
            lm_head and norms unless --include is given; copies every other tensor unchanged. The layout, \
            bytes and double-quant offsets are those of bitsandbytes 0.50.2: quantizing the reference f32 model \
            (../shared/reference/interop/model_fp32) gives the file transformers + bitsandbytes saved, byte for \
            byte. A selection that quantizes nothing is a warning (an error with --strict).
            """)

    @Argument(help: "The input: a safetensors file, a Llama model directory or a .gguf file.")
    var input: String

    @Option(name: .shortAndLong, help: "The output safetensors file, or the model directory for a model input (written atomically).")
    var output: String

    @OptionGroup var quantization: QuantizationOptions

    @Option(help: "Quantize only tensors whose name contains a match of this regex (replaces the default exclusions).")
    var include: String?

    @Option(help: "Never quantize tensors whose name contains a match of this regex.")
    var exclude: String?

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Option(help: "bnb_4bit_compute_dtype recorded in a model directory's config.json: float32, float16 or bfloat16.")
    var computeDType: String = "float32"

    @Flag(help: "Replace the output file even if it is read-only (for a model: replace an existing output directory).")
    var force = false

    @Flag(help: "Fail (instead of warning) when no tensor is selected for quantization.")
    var strict = false

    func run() throws {
        let bar = ProgressBar()
        do {
            var options = try quantization.options(threads: threadCount(threads))
            if isModel(input) { return try quantizeModel(options, bar) }
            options.include = include
            options.exclude = exclude
            let out = try OutputFile(output, force: force)
            if let nothing = try NothingToConvert.quantize(input: input, include: include, exclude: exclude) {
                if strict { throw QLoraError.invalidArgument(nothing + " (--strict)") }
                FileHandle.standardError.write(Data("warning: \(nothing); every tensor is copied unchanged\n".utf8))
            }
            let summary = try CheckpointConversion.quantize(
                input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), options: options,
                progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            let dq = options.doubleQuant ? "double quant" : "f32 absmax"
            print("quantized \(summary.tensorsConverted) tensors (\(summary.convertedParameters) parameters, \(options.quantType.rawValue), block \(options.blockSize), \(dq)); copied \(summary.tensorsCopied)")
            print("quantized tensors: \(summary.convertedBytesBefore) -> \(summary.convertedBytesAfter) bytes, \(String(format: "%.3f", summary.bitsPerParameter)) bits per parameter")
            print("file: \(summary.fileBytesBefore) -> \(summary.fileBytesAfter) bytes, wrote \(output)")
            if let note = out.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}

extension QuantizeCommand {
    /// A model directory or a GGUF file (by extension or magic) rather than one safetensors file.
    func isModel(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return true }
        if path.lowercased().hasSuffix(".gguf") { return true }
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    func quantizeModel(_ options: QuantizeOptions, _ bar: ProgressBar) throws {
        if include != nil || exclude != nil {
            throw QLoraError.invalidArgument("--include/--exclude apply to a safetensors file; a model's 7 projections per layer are always the 4-bit tensors")
        }
        let summary = try LlamaBnbExport.export(model: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), options: options,
                                                computeDType: computeDType, replace: force,
                                                progress: { bar.update(done: $0, total: $1, item: $2) })
        bar.finish()
        let dq = options.doubleQuant ? "double quant" : "f32 absmax"
        print("quantized \(summary.tensorsConverted) projections (\(summary.convertedParameters) parameters, \(options.quantType.rawValue), block \(options.blockSize), \(dq)); kept \(summary.tensorsCopied) tensors unquantized")
        print("model.safetensors: \(summary.fileBytesAfter) bytes, \(String(format: "%.3f", summary.bitsPerParameter)) bits per quantized parameter; wrote \(output)")
    }
}

/// Validates --threads (nil: all available cores).
func threadCount(_ threads: Int?) throws -> Int {
    guard let threads else { return Runtime.defaultThreads }
    guard threads > 0 else { throw QLoraError.invalidArgument("--threads must be > 0, got \(threads)") }
    return threads
}
