import ArgumentParser
import Foundation
import QLoRA

/// `qlora inspect GRAPH --weights W`: the compiled plan and a memory comparison of the two modes.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Compile a graph over a checkpoint and show the plan: steps, kernels, buffers, memory, FLOPs.",
        discussion: """
            Shows every step (kernel, fused ops, output buffer, FLOPs and bytes moved), each arena buffer's \
            offset, size and lifetime, the arena and persistent bytes, and compiles both on-the-fly and cached \
            to compare their memory side by side. The inputs' batch dimensions "..." are [--tokens].
            """)

    @OptionGroup var graphOptions: GraphOptions

    @Option(help: "The safetensors checkpoint (bitsandbytes 4-bit, or f32/f16/bf16 quantized at load).")
    var weights: String

    @Option(help: "Execution mode of the plan shown: on-the-fly, cached or auto.")
    var mode: ExecutionMode = .onTheFly

    @Option(parsing: .unconditional, help: "Rows M of the input: its batch dimensions \"...\" become [M].")
    var tokens: Int = 1

    @Option(help: "Arithmetic of the fused kernels: float32, or bfloat16 (faster on CPUs with AVX512-BF16, f32 elsewhere; measured max|diff|/max|y| on the reference cases: 2.0e-3 to 4.1e-3 per layer, up to 5.8e-3 through 3 layers).")
    var computeType: ComputeType = .float32

    @Option(parsing: .unconditional, help: "Threads the plan is compiled for (default: all available cores).")
    var threads: Int?

    @Flag(help: "Show the training plan instead: mse against the graph's output, backward into fresh LoRA adapters (r = 8) on every linear.")
    var train = false

    @Option(help: ArgumentHelp("With --train: the memory budget (arena + persistent), e.g. 512M or 2G; shows which segments are recomputed.", valueName: "size"))
    var memoryBudget: String?

    @Flag(help: "With --train: recompute every checkpoint segment in the backward.")
    var gradientCheckpointing = false

    @Option(help: "Output format: text or json.")
    var format: InspectFormat = .text

    enum InspectFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    func run() throws {
        do {
            guard tokens > 0 else { throw QLoraError.invalidArgument("--tokens must be > 0, got \(tokens)") }
            let threads = try threadCount(threads)
            guard train || (memoryBudget == nil && !gradientCheckpointing) else {
                throw QLoraError.invalidArgument("--memory-budget and --gradient-checkpointing apply to the training plan: add --train")
            }
            let budget = try memoryBudget.map { try ByteSize.parse($0, option: "--memory-budget") }
            let loaded = try graphOptions.load(weights: weights, extraDims: ["tokens": tokens], threads: threads,
                                               options: train ? GraphLoadOptions(freshLora: QLoraConfig()) : GraphLoadOptions())
            if train { try Self.recordTraining(loaded) }
            func options(_ m: ExecutionMode) -> CompileOptions {
                CompileOptions(mode: m, threads: threads, computeType: computeType, memoryBudget: budget, gradientCheckpointing: gradientCheckpointing)
            }
            let plan = try loaded.graph.compile(options(mode))
            let modes: [ExecutionMode] = [.onTheFly, .cached]
            let compared = try modes.map { m in m == mode ? plan : try loaded.graph.compile(options(m)) }
            let reports = compared.map(PlanReport.init)
            let report = PlanReport(plan)
            let text: String
            if format == .json {
                text = InspectCommand.json(loaded, report: report, compared: zip(modes, reports).map { ($0.rawValue, $1) })
                    .pythonDumps(indent: 2) + "\n"
            } else {
                text = InspectCommand.text(loaded, plan: plan, report: report, compared: zip(modes, reports).map { ($0.rawValue, $1) })
            }
            FileHandle.standardOutput.write(Data(text.utf8))
        } catch {
            throw fail(error)
        }
    }

    /// The training step `qlora train` compiles: mse of the (single) output against a `target`
    /// input, backward into every linear's LoRA A and B.
    static func recordTraining(_ loaded: LoadedGraph) throws {
        let g = loaded.graph
        guard loaded.definition.outputs.count == 1, let y = g.output(named: loaded.definition.outputs[0].name) else {
            throw QLoraError.invalidArgument("--train needs a graph with one output (the prediction); \(loaded.definition.name) has \(loaded.definition.outputs.count)")
        }
        let store = try ParameterStore(gathering: loaded.layers.keys.sorted().flatMap { loaded.layers[$0]!.trainableParameters })
        let loss = try g.mseLoss(y, target: g.input("target", shape: y.shape), label: "loss")
        g.output("loss", loss)
        try g.backward(from: loss, parameters: store)
    }

    static func header(_ loaded: LoadedGraph) -> String {
        let dims = loaded.dims.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        let inputs = loaded.inputs.map { "\($0.name) \($0.shape)" }.joined(separator: ", ")
        return "graph \(loaded.definition.name): \(loaded.layers.count) QuantizedLinear layers; dims \(dims); inputs \(inputs)"
    }

    static func text(_ loaded: LoadedGraph, plan: ExecutablePlan, report: PlanReport, compared: [(String, PlanReport)]) -> String {
        var lines = [header(loaded), plan.summary]
        lines.append(String(format: "total: %@, %@ moved", human(Double(report.totalFlops), "FLOP") as NSString,
                            bytes(report.totalBytesMoved) as NSString))
        lines.append("arena buffers (offset and size in bytes; lifetime from the defining step to the last use):")
        lines.append(report.bufferTable)
        func right(_ s: String) -> String { String(repeating: " ", count: max(1, 14 - s.count)) + s }
        lines.append("memory by mode:".padding(toLength: 22, withPad: " ", startingAt: 0) + compared.map { right($0.0) }.joined())
        func row(_ name: String, _ value: (PlanReport) -> Int) {
            lines.append(name.padding(toLength: 22, withPad: " ", startingAt: 0) + compared.map { right(bytes(value($0.1))) }.joined())
        }
        row("  arena", \.arenaBytes)
        row("    of which scratch", \.scratchBytes)
        row("  4-bit weights", \.quantizedWeightBytes)
        row("  cached f32", \.cachedWeightBytes)
        row("  parameters", \.parameterBytes)
        row("  total", { $0.arenaBytes + $0.persistentBytes })
        if let c = report.checkpointing {
            lines.append("kept vs recomputed (gradient checkpointing): planned peak \(bytes(report.plannedPeakBytes)) with, \(bytes(c.peakWithoutBytes)) without")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func json(_ loaded: LoadedGraph, report: PlanReport, compared: [(String, PlanReport)]) -> JSONValue {
        func memory(_ r: PlanReport) -> JSONValue { r.json["memory"]! }
        return .object([
            ("graph", .string(loaded.definition.name)),
            ("dims", .object(loaded.dims.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("inputs", .array(loaded.inputs.map { .object([("name", .string($0.name)), ("shape", .array($0.shape.map { .int($0) }))]) })),
            ("plan", report.json),
            ("modes", .object(compared.map { ($0.0, memory($0.1)) })),
        ])
    }

    static func bytes(_ n: Int) -> String {
        let v = Double(n)
        if v >= 1_048_576 { return String(format: "%.2f MiB", v / 1_048_576) }
        if v >= 1024 { return String(format: "%.1f KiB", v / 1024) }
        return "\(n) B"
    }

    static func human(_ v: Double, _ unit: String) -> String {
        if v >= 1e9 { return String(format: "%.2f G\(unit)", v / 1e9) }
        if v >= 1e6 { return String(format: "%.2f M\(unit)", v / 1e6) }
        if v >= 1e3 { return String(format: "%.1f k\(unit)", v / 1e3) }
        return String(format: "%.0f \(unit)", v)
    }
}
