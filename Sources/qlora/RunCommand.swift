import ArgumentParser
import Foundation
import QLoRA

/// `qlora run GRAPH --weights W --input X --output Y`: one forward pass, inputs and outputs by name.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a graph on inputs from a safetensors file and write its outputs to another.",
        discussion: """
            The input file holds one tensor per graph input, named like the input (e.g. x, shape [..., hidden]); \
            the output file gets one f32 tensor per graph output (e.g. y), written atomically. With --adapter, \
            the PEFT adapter's lora_A/lora_B and adapter_config.json (lora_alpha, r, use_rslora) set each targeted \
            layer's LoRA; layers it does not cover keep a fresh init (B = 0, so they compute the base weight only).
            """)

    @OptionGroup var graphOptions: GraphOptions

    @Option(help: "The safetensors checkpoint (bitsandbytes 4-bit, or f32/f16/bf16 quantized at load).")
    var weights: String

    @Option(help: "A PEFT LoRA adapter directory (adapter_model.safetensors + adapter_config.json).")
    var adapter: String?

    @Option(help: "A safetensors file with one tensor per graph input.")
    var input: String

    @Option(help: "Where to write the outputs (safetensors, written atomically).")
    var output: String

    @Option(help: "Execution mode: on-the-fly, cached or auto.")
    var mode: ExecutionMode = .onTheFly

    @Option(help: "Arithmetic of the fused kernels: float32, or bfloat16 (faster on CPUs with AVX512-BF16, ~1e-3 relative error).")
    var computeType: ComputeType = .float32

    @Option(help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    func run() throws {
        do {
            let threads = try threadCount(threads)
            let def = try GraphDefinition.load(url: URL(fileURLWithPath: graphOptions.graph), dims: graphOptions.dimValues())
            let inputFile = try SafeTensorsFile(url: URL(fileURLWithPath: input))
            var feeds: [String: Tensor] = [:]
            for i in def.inputs {
                guard inputFile.contains(i.name) else {
                    throw QLoraError.malformedFile(file: input, field: i.name,
                                                   reason: "no such tensor; the graph \(def.name) needs input '\(i.name)' of shape \(i.shape)")
                }
                feeds[i.name] = try inputFile.tensor(i.name)
            }
            for name in inputFile.names where feeds[name] == nil {
                FileHandle.standardError.write(Data("note: \(input) has tensor '\(name)', which is not an input of \(def.name); ignored\n".utf8))
            }
            let adapterWeights = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
            let loaded = try graphOptions.load(weights: weights, threads: threads,
                                               options: GraphLoadOptions(inputShapes: feeds.mapValues(\.shape), adapter: adapterWeights))
            let plan = try loaded.graph.compile(CompileOptions(mode: mode, threads: threads, computeType: computeType))
            let results = try plan.run(feeds)
            let writer = try SafeTensorsWriter(url: URL(fileURLWithPath: output), metadata: ["format": "pt"])
            for o in def.outputs { try writer.add(o.name, tensor: results[o.name]!) }
            try writer.commit()
            let shapes = def.outputs.map { "\($0.name) \(results[$0.name]!.shape)" }.joined(separator: ", ")
            print("wrote \(shapes) to \(output) (\(mode.rawValue), \(plan.steps.count) steps)")
        } catch {
            throw fail(error)
        }
    }
}
