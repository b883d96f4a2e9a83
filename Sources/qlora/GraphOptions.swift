import ArgumentParser
import Foundation
import QLoRA

extension ExecutionMode: ExpressibleByArgument {}
extension ComputeType: ExpressibleByArgument {
    /// float32 | bfloat16, or their short names f32 | bf16.
    public init?(argument: String) {
        switch argument {
        case "float32", "f32": self = .float32
        case "bfloat16", "bf16": self = .bfloat16
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["f32", "bf16", "float32", "bfloat16"] }
}
extension DumpStage: ExpressibleByArgument {}
extension DumpFormat: ExpressibleByArgument {}

/// The options every graph command shares: the graph file, the weights and how to quantize them,
/// and values for named dimensions.
struct GraphOptions: ParsableArguments {
    @Argument(help: "The graph file (qlora-graph JSON, see docs/graph-format.md), e.g. Graphs/llama-mlp.json.")
    var graph: String

    @Option(name: .customLong("dim"), help: ArgumentHelp(
        "A named dimension's value, NAME=N (repeatable), e.g. --dim hidden=64 --dim intermediate=128.",
        discussion: "Dimensions the weights or inputs determine need no --dim; a --dim that disagrees with them is an error.",
        valueName: "name=N"))
    var dims: [String] = []

    @OptionGroup(title: "Quantization at load (f32/f16/bf16 weights)")
    var quantization: QuantizationOptions

    /// The parsed --dim values.
    func dimValues() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for item in dims {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let n = Int(parts[1]), n > 0 else {
                throw QLoraError.invalidArgument("--dim expects NAME=N with N > 0, got \"\(item)\"")
            }
            out[parts[0]] = n
        }
        return out
    }

    /// Parses the graph file and loads it over `weights` (nil: zero weights shaped by the dims).
    /// With `model` (a model directory or GGUF file), the model's config gives every dimension and
    /// constant (Graphs/llama.json); `weights` and `model` are exclusive.
    func load(weights: String?, model: String? = nil, extraDims: [String: Int] = [:], threads: Int,
              options: GraphLoadOptions = GraphLoadOptions()) throws -> LoadedGraph {
        if weights != nil, model != nil { throw QLoraError.invalidArgument("--weights and --model are exclusive: give one") }
        let q = try quantization.options(threads: threads)
        let llama = try model.map { try LlamaCheckpoint(url: URL(fileURLWithPath: $0), quantization: q) }
        let dims = (llama?.graphDims ?? [:]).merging(try dimValues()) { _, new in new }.merging(extraDims) { _, new in new }
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: graph), dims: dims)
        let source: (any GraphWeightSource)? = try llama ?? weights.map { try CheckpointWeights(url: URL(fileURLWithPath: $0), quantization: q) }
        let loaded = try def.load(weights: source, options: options)
        for note in loaded.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        return loaded
    }
}
