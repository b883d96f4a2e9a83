import ArgumentParser
import Foundation
import QLoRA

extension MergeFormat: ExpressibleByArgument {}

/// `qlora merge --weights W --adapter A -o OUT [--format f32|f16|bf16|nf4|fp4]`: the adapter
/// folded into its base, W' = dequant(W₄) + scaling·B·A.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge a PEFT LoRA adapter into its 4-bit base: W' = dequant(W4) + scaling·B·A.",
        discussion: """
            The adapter was trained against the dequantized 4-bit weights, so that is the base it is merged into \
            (merging into the original 16-bit weights double-counts what the adapter learned about the quantization \
            error). A plain f32/f16/bf16 checkpoint is quantized first with --quant-type/--block-size/--double-quant, \
            as qlora train did at load. --format f32|f16|bf16 writes every weight dequantized in that dtype (the \
            transformers layout); nf4|fp4 re-quantize the merged weights into the bitsandbytes 4-bit layout and \
            report the error that adds (max and RMS of the output difference on random inputs). Written atomically.
            """)

    @Option(help: "The base checkpoint (bitsandbytes 4-bit safetensors, or f32/f16/bf16 quantized as at training).")
    var weights: String

    @Option(help: "The PEFT adapter directory (adapter_model.safetensors + adapter_config.json).")
    var adapter: String

    @Option(name: .shortAndLong, help: "The output safetensors file.")
    var output: String

    @Option(help: "f32, f16, bf16 (dequantized, transformers layout) or nf4, fp4 (re-quantized, bitsandbytes layout).")
    var format: MergeFormat = .f32

    @OptionGroup(title: "Quantization of a plain base checkpoint")
    var quantization: QuantizationOptions

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Flag(help: "Replace the output file even if it is read-only.")
    var force = false

    func run() throws {
        let bar = ProgressBar()
        do {
            let threads = try threadCount(threads)
            let out = try OutputFile(output, force: force)
            let lora = try LoraAdapter(directory: URL(fileURLWithPath: adapter))
            let summary = try AdapterMerge.merge(weights: URL(fileURLWithPath: weights), adapter: lora, output: URL(fileURLWithPath: output),
                                                 format: format, quantization: quantization.options(threads: threads), threads: threads,
                                                 progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            print("merged \(summary.mergedModules.count) LoRA module\(summary.mergedModules.count == 1 ? "" : "s") into dequant(W4) (\(format.rawValue)); wrote \(summary.tensorsWritten) tensors, \(summary.fileBytes) bytes to \(output)")
            for e in summary.requantization {
                print("re-quantization error \(e.module): " + String(format: "max %.3g, rms %.3g (max |y| %.3g)", Double(e.maxAbs), Double(e.rms), Double(e.maxOutput)) + " on 16 random inputs")
            }
            if let note = out.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}
