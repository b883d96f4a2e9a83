import ArgumentParser
import Foundation
import QLoRA

/// `qlora dequantize IN -o OUT`: every 4-bit parameter back to one F32 tensor.
struct DequantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dequantize",
        abstract: "Dequantize a bitsandbytes 4-bit checkpoint back to f32.",
        discussion: "Each 4-bit parameter becomes one F32 tensor with its quant-state shape; its auxiliary tensors are dropped and every other tensor is copied unchanged.")

    @Argument(help: "The input bitsandbytes 4-bit safetensors file.")
    var input: String

    @Option(name: .shortAndLong, help: "The output safetensors file (written atomically).")
    var output: String

    @Option(help: "Worker threads (default: all available cores).")
    var threads: Int?

    func run() throws {
        let bar = ProgressBar()
        do {
            let summary = try CheckpointConversion.dequantize(
                input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), threads: threadCount(threads),
                progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            print("dequantized \(summary.tensorsConverted) tensors (\(summary.convertedParameters) parameters); copied \(summary.tensorsCopied)")
            print("file: \(summary.fileBytesBefore) -> \(summary.fileBytesAfter) bytes, wrote \(output)")
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}
