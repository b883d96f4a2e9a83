import ArgumentParser
import Foundation
import QLoRA

extension ExecutionMode: ExpressibleByArgument {}
extension DumpStage: ExpressibleByArgument {}
extension DumpFormat: ExpressibleByArgument {}

/// The options every graph command shares: the graph file, the weights and how to quantize them,
/// and values for named dimensions.
struct GraphOptions: ParsableArguments {
    @Argument(help: "The graph file (qlora-graph JSON, see docs/graph-format.md), e.g. Graphs/llama-mlp.json.")
    var graph: String

    @Option(name: .customLong("dim"), help: ArgumentHelp(
        "A named dimension's value, NAME=N (repeatable), e.g. --dim hidden=64 --dim tokens=4.",
        discussion: "Dimensions the weights or inputs determine need no --dim; a --dim that disagrees with them is an error.",
        valueName: "name=N"))
    var dims: [String] = []

    @Option(help: "4-bit type for unquantized (f32/f16/bf16) linear weights: nf4 or fp4. bitsandbytes 4-bit weights are used as stored.")
    var quantType: String = "nf4"

    @Option(help: "Elements per absmax block when quantizing at load (a power of two from 32 to 4096).")
    var blockSize: Int = 64

    @Flag(inversion: .prefixedNo, help: "Double-quantize the absmax statistics when quantizing at load.")
    var doubleQuant = true

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

    func quantization(threads: Int) throws -> QuantizeOptions {
        guard let type = QuantType(rawValue: quantType) else {
            throw QLoraError.invalidArgument("--quant-type must be nf4 or fp4, got \"\(quantType)\"")
        }
        var q = QuantizeOptions()
        q.quantType = type
        q.blockSize = blockSize
        q.doubleQuant = doubleQuant
        q.threads = threads
        return q
    }

    /// Parses the graph file and loads it over `weights` (nil: zero weights shaped by the dims).
    func load(weights: String?, extraDims: [String: Int] = [:], threads: Int,
              options: GraphLoadOptions = GraphLoadOptions()) throws -> LoadedGraph {
        let dims = try dimValues().merging(extraDims) { _, new in new }
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: graph), dims: dims)
        let source = try weights.map { try CheckpointWeights(url: URL(fileURLWithPath: $0), quantization: quantization(threads: threads)) }
        let loaded = try def.load(weights: source, options: options)
        for note in loaded.notes { FileHandle.standardError.write(Data("note: \(note)\n".utf8)) }
        return loaded
    }
}
