import ArgumentParser
import Foundation
import QLoRA

/// `qlora dump GRAPH`: the IR before or after the compiler passes, as text, JSON or Graphviz DOT.
struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print a graph's IR as recorded or after the compiler passes (text, JSON or Graphviz DOT).",
        discussion: """
            Without --weights the linear and norm weights are synthetic (zero 4-bit weights, unit norm weights) \
            and every named dimension must come from --dim, e.g.
              qlora dump Graphs/llama-mlp.json --dim hidden=64 --dim intermediate=128 --tokens 4 --format dot | dot -Tsvg > mlp.svg
            The batch dimensions "..." of the inputs are [M] with M = --tokens (default 1).
            In DOT output each fused node is a cluster labelled with the ops it replaced. \
            The JSON output parses back (IRDump.decode) to the same IR.
            """)

    @OptionGroup var graphOptions: GraphOptions

    @Option(help: "A safetensors checkpoint giving the weights and their shapes (optional: see above).")
    var weights: String?

    @Option(help: "Output format: text, json or dot.")
    var format: DumpFormat = .text

    @Option(help: "recorded (as the layers recorded it) or optimized (after fusion and mode lowering).")
    var stage: DumpStage = .recorded

    @Option(help: "Execution mode the optimized stage is lowered for: on-the-fly, cached or auto.")
    var mode: ExecutionMode = .onTheFly

    @Option(parsing: .unconditional, help: "Rows M of the input: its batch dimensions \"...\" become [M] (default: 1).")
    var tokens: Int?

    func run() throws {
        do {
            if let tokens, tokens <= 0 { throw QLoraError.invalidArgument("--tokens must be > 0, got \(tokens)") }
            let loaded = try graphOptions.load(weights: weights, extraDims: tokens.map { ["tokens": $0] } ?? [:], threads: 1)
            let text = try loaded.graph.dump(stage: stage, format: format, options: CompileOptions(mode: mode, threads: 1),
                                             title: loaded.definition.name)
            FileHandle.standardOutput.write(Data(text.utf8))
        } catch {
            throw fail(error)
        }
    }
}
