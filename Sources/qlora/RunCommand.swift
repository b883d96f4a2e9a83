import ArgumentParser
import Foundation
import QLoRA

/// `qlora run GRAPH --weights W|--model M --input X --output Y`: one forward pass, inputs and outputs by name.
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
    var weights: String?

    @Option(help: "A whole model: a Hugging Face directory (config.json + safetensors, float or bitsandbytes 4-bit) or a llama GGUF file; its config sizes the graph (Graphs/llama.json).")
    var model: String?

    @Option(help: "A PEFT LoRA adapter directory (adapter_model.safetensors + adapter_config.json).")
    var adapter: String?

    @Option(help: "A safetensors file with one tensor per graph input.")
    var input: String

    @Option(help: "Where to write the outputs (safetensors, written atomically).")
    var output: String

    @Option(help: "Execution mode: on-the-fly, cached or auto.")
    var mode: ExecutionMode = .onTheFly

    @Option(help: "Arithmetic of the fused kernels: float32, or bfloat16 (faster on CPUs with AVX512-BF16, f32 elsewhere; measured max|diff|/max|y| on the reference cases: 2.0e-3 to 4.1e-3 per layer, up to 5.8e-3 through 3 layers).")
    var computeType: ComputeType = .float32

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores); results are identical for any count.")
    var threads: Int?

    @Flag(help: ieeeDenormalsHelp)
    var ieeeDenormals = false

    @Flag(help: "Replace the output file even if it is read-only.")
    var force = false

    @Flag(help: profileHelp)
    var profile = false

    func run() throws { try profiled(profile) { try execute() } }

    private func execute() throws {
        do {
            let threads = try threadCount(threads)
            let out = try OutputFile(output, force: force)
            let modelDims = try model.map { try LlamaCheckpoint(url: URL(fileURLWithPath: $0)).graphDims } ?? [:]
            let def = try GraphDefinition.load(url: URL(fileURLWithPath: graphOptions.graph),
                                               dims: modelDims.merging(try graphOptions.dimValues()) { _, new in new })
            let inputFile = try SafeTensorsFile(url: URL(fileURLWithPath: input))
            var feeds: [String: Tensor] = [:], ids: [String: IntTensor] = [:]
            for i in def.inputs {
                guard inputFile.contains(i.name) else {
                    throw QLoraError.missingTensor(file: input, name: i.name, neededBy: "input '\(i.name)' \(i.shape) of the graph \(def.name)",
                                                   suggestions: inputFile.names.count == 1 ? inputFile.names : [])
                }
                if i.element == .int32 { ids[i.name] = try inputFile.intTensor(i.name) } else { feeds[i.name] = try inputFile.tensor(i.name) }
            }
            for name in inputFile.names where feeds[name] == nil && ids[name] == nil {
                FileHandle.standardError.write(Data("note: \(input) has tensor '\(name)', which is not an input of \(def.name); ignored\n".utf8))
            }
            let adapterWeights = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
            guard weights != nil || model != nil else { throw QLoraError.invalidArgument("give the weights: --weights FILE or --model DIR|FILE.gguf") }
            let inputShapes = feeds.mapValues(\.shape).merging(ids.mapValues(\.shape)) { a, _ in a }
            let loaded = try graphOptions.load(weights: weights, model: model, threads: threads,
                                               options: GraphLoadOptions(inputShapes: inputShapes, adapter: adapterWeights))
            let plan = try loaded.graph.compile(CompileOptions(mode: mode, threads: threads, computeType: computeType,
                                                                 flushDenormals: !ieeeDenormals))
            let results = try plan.run(feeds, ids: ids)
            let writer = try SafeTensorsWriter(url: URL(fileURLWithPath: output), metadata: ["format": "pt"])
            for o in def.outputs { try writer.add(o.name, tensor: results[o.name]!) }
            try writer.commit()
            let shapes = def.outputs.map { "\($0.name) \(results[$0.name]!.shape)" }.joined(separator: ", ")
            print("wrote \(shapes) to \(output) (\(mode.rawValue), \(plan.steps.count) steps)")
            if let note = out.note { FileHandle.standardError.write(Data((note + "\n").utf8)) }
        } catch {
            throw fail(error)
        }
    }
}
