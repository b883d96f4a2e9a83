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

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Flag(help: "Replace the output file even if it is read-only.")
    var force = false

    @Flag(help: "Fail (instead of warning) when the input has no 4-bit tensors.")
    var strict = false

    func run() throws {
        let bar = ProgressBar()
        do {
            let threads = try threadCount(threads)
            let out = try OutputFile(output, force: force)
            if let nothing = try NothingToConvert.dequantize(input: input) {
                if strict { throw QLoraError.invalidArgument(nothing + " (--strict)") }
                FileHandle.standardError.write(Data("warning: \(nothing); every tensor is copied unchanged\n".utf8))
            }
            let summary = try CheckpointConversion.dequantize(
                input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output), threads: threads,
                progress: { bar.update(done: $0, total: $1, item: $2) })
            bar.finish()
            print("dequantized \(summary.tensorsConverted) tensors (\(summary.convertedParameters) parameters); copied \(summary.tensorsCopied)")
            print("file: \(summary.fileBytesBefore) -> \(summary.fileBytesAfter) bytes, wrote \(output)")
            if let note = out.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        } catch {
            bar.finish()
            throw fail(error)
        }
    }
}
