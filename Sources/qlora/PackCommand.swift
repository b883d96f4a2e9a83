import ArgumentParser
import Foundation
import QLoRA

/// `qlora pack -o X.safetensors NAME=SOURCE…`: makes an input file for `qlora run`.
struct PackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Write f32 tensors from .npy, raw float32 or JSON files into one safetensors file (e.g. an input for `run`).",
        discussion: """
            Each argument is NAME=SOURCE; NAME becomes the tensor's name (for `run`, the graph input's name, e.g. x). \
            SOURCE is a .npy file (float32/float64/float16, C order), a .json file of nested number arrays, or a raw \
            little-endian float32 file with its shape after a colon. Examples:
              qlora pack -o x.safetensors x=../shared/reference/interop/expected/x3d.f32:2x4x64
              qlora pack -o x.safetensors x=x.npy
              qlora pack -o x.safetensors x=x.json        (x.json: [[0.1, 0.2, …], …])
            A .npy or .json source with :SHAPE is reshaped (same number of values).
            """)

    @Argument(help: ArgumentHelp("A tensor: NAME=FILE.npy, NAME=FILE.json or NAME=FILE:D1xD2x… (raw float32).", valueName: "name=source"))
    var tensors: [String] = []

    @Option(name: .shortAndLong, help: "The output safetensors file (written atomically).")
    var output: String

    @Flag(help: "Replace the output file even if it is read-only.")
    var force = false

    func run() throws {
        do {
            guard !tensors.isEmpty else { throw QLoraError.invalidArgument("give at least one NAME=SOURCE, e.g. x=x.npy") }
            let sources = try tensors.map(TensorSource.init)
            var seen = Set<String>()
            for s in sources where !seen.insert(s.name).inserted {
                throw QLoraError.invalidArgument("tensor name '\(s.name)' is given twice")
            }
            let out = try OutputFile(output, force: force)
            let loaded = try sources.map { ($0.name, try $0.load()) }
            let writer = try SafeTensorsWriter(url: URL(fileURLWithPath: output), metadata: ["format": "pt"])
            for (name, t) in loaded { try writer.add(name, tensor: t) }
            try writer.commit()
            print("wrote " + loaded.map { "\($0.0) \($0.1.shape)" }.joined(separator: ", ") + " to \(output)")
            if let note = out.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        } catch {
            throw fail(error)
        }
    }
}
