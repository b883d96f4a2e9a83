import ArgumentParser
import Foundation
import QLoRA

/// `qlora demo`: the built-in end-to-end job `make demo` runs. Every check that fails makes the
/// command exit non-zero.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Fine-tune SmolLM2-135M-Instruct (NF4 + LoRA) on a small dataset and show its answers before and after (--synthetic: the engine checks).",
        discussion: """
            Without --synthetic: loads the model (a GGUF, converted to NF4 at load), asks it a few questions, trains \
            LoRA adapters on every projection with the dataset (a JSONL of chats), asks again, and writes the loss \
            curve (SVG), a text summary and the adapter into --out. With --synthetic, in a temporary directory: writes a deterministic f32 checkpoint (3 residual SwiGLU MLP blocks with \
            RMSNorm, hidden 1024, intermediate 2816), quantizes it to the bitsandbytes 4-bit layout (nf4, block 64, \
            double quant), compiles the graph in on-the-fly and cached mode, prints the plan and the memory of \
            both modes, times them at M=1 and M=64 (median of several runs), writes a PEFT adapter with random \
            non-zero A/B, runs with it, reloads it from disk and checks the outputs agree bitwise.
            """)

    @Option(parsing: .unconditional, help: "Worker threads (default: all available cores).")
    var threads: Int?

    @Option(parsing: .unconditional, help: "Timed runs per measurement (the median is shown).")
    var repeats: Int = 15

    @Option(help: "Keep the generated files in this directory instead of a temporary one (--synthetic).")
    var keep: String?

    @Flag(help: "The synthetic checks (a generated Llama-MLP checkpoint: quantize, plan, time, adapter round trip) instead of the fine-tuning job.")
    var synthetic = false

    @OptionGroup(title: "The fine-tuning job")
    var job: DemoJobOptions

    func run() throws {
        guard synthetic else {
            do { try DemoJob(options: job, threads: try threadCount(threads)).run() } catch let e as ExitCode { throw e } catch { throw fail(error) }
            return
        }
        var checks = DemoChecks()
        do {
            guard repeats > 0 else { throw QLoraError.invalidArgument("--repeats must be > 0, got \(repeats)") }
            let threads = try threadCount(threads)
            try runDemo(threads: threads, checks: &checks)
        } catch {
            throw fail(error)
        }
        print(checks.verdict)
        if !checks.allPassed { throw ExitCode.failure }
    }

    private func runDemo(threads: Int, checks: inout DemoChecks) throws {
        let model = DemoModel()
        let fm = FileManager.default
        let dir = keep.map { URL(fileURLWithPath: $0) } ?? fm.temporaryDirectory.appendingPathComponent("qlora-demo-\(getpid())")
        try? fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if keep == nil { try? fm.removeItem(at: dir) } }
        print("qlora demo: \(model.layers) residual Llama MLP blocks, hidden \(model.hidden), intermediate \(model.intermediate), "
              + "\(threads) thread\(threads == 1 ? "" : "s"), isa \(Runtime.isa)")

        // 1. The checkpoint, and its 4-bit version made by `qlora quantize`'s code.
        let fp32 = dir.appendingPathComponent("model_fp32.safetensors"), bnb = dir.appendingPathComponent("model_bnb4bit.safetensors")
        try model.writeCheckpoint(to: fp32)
        var q = QuantizeOptions()
        q.threads = threads
        let summary = try CheckpointConversion.quantize(input: fp32, output: bnb, options: q)
        print(String(format: "quantized %d weights (nf4, block 64, double quant): %@ -> %@ (%.3f bits per parameter)",
                     summary.tensorsConverted, InspectCommand.bytes(summary.convertedBytesBefore) as NSString,
                     InspectCommand.bytes(summary.convertedBytesAfter) as NSString, summary.bitsPerParameter))

        // 2. Compile both modes at M = 1 and 64; show the plan and the memory.
        let def = try GraphDefinition.parse(Array(DemoModel.graphJSON.utf8), file: "llama-mlp-stack (built in)")
        let weights = try CheckpointWeights(url: bnb, quantization: q)
        let sizes = [1, 64]
        var plans: [Int: [ExecutionMode: ExecutablePlan]] = [:]
        var graphs: [Int: LoadedGraph] = [:]
        for m in sizes {
            let loaded = try def.load(weights: weights, options: GraphLoadOptions(inputShapes: ["x": [m, model.hidden]]))
            graphs[m] = loaded
            for mode in [ExecutionMode.onTheFly, .cached] {
                plans[m, default: [:]][mode] = try loaded.graph.compile(CompileOptions(mode: mode, threads: threads))
            }
        }
        let shown = plans[64]![.onTheFly]!
        print("\n" + InspectCommand.text(graphs[64]!, plan: shown, report: PlanReport(shown),
                                         compared: [ExecutionMode.onTheFly, .cached].map { ($0.rawValue, PlanReport(plans[64]![$0]!)) }))

        // 3. Time both modes (median of `repeats` runs after a warm-up).
        print("time per forward pass (median of \(repeats) runs)".padding(toLength: 42, withPad: " ", startingAt: 0) + sizes.map { String(repeating: " ", count: 13 - "M=\($0)".count) + "M=\($0)" }.joined(separator: " "))
        for mode in [ExecutionMode.onTheFly, .cached] {
            var cells: [String] = []
            for m in sizes {
                let x = try model.input(rows: m)
                cells.append(String(format: "%10.3f ms", try median(plans[m]![mode]!, x) * 1e3))
            }
            print("  " + mode.rawValue.padding(toLength: 40, withPad: " ", startingAt: 0) + cells.joined(separator: " "))
        }

        // 4. Checks.
        print("\nchecks:")
        let x = try model.input(rows: 64)
        let yOnTheFly = try plans[64]![.onTheFly]!.run(["x": x])["y"]!
        let yCached = try plans[64]![.cached]!.run(["x": x])["y"]!
        checks.close("on-the-fly and cached plans agree", yOnTheFly, yCached, tolerance: 1e-5)

        let atLoad = try def.load(weights: CheckpointWeights(url: fp32, quantization: q),
                                  options: GraphLoadOptions(inputShapes: ["x": x.shape]))
        let yAtLoad = try atLoad.graph.compile(CompileOptions(mode: .onTheFly, threads: threads)).run(["x": x])["y"]!
        checks.identical("f32 checkpoint quantized at load == bitsandbytes 4-bit checkpoint", yAtLoad, yOnTheFly)

        let adapter = try model.randomAdapter()
        let adapterDir = dir.appendingPathComponent("adapter")
        let withAdapter = try def.load(weights: weights, options: GraphLoadOptions(inputShapes: ["x": x.shape], adapter: adapter))
        let yAdapter = try withAdapter.graph.compile(CompileOptions(mode: .onTheFly, threads: threads)).run(["x": x])["y"]!
        checks.differs("the adapter changes the output", yAdapter, yOnTheFly)
        try adapter.write(to: adapterDir)
        let reloaded = try LoraAdapter(directory: adapterDir)
        let again = try def.load(weights: weights, options: GraphLoadOptions(inputShapes: ["x": x.shape], adapter: reloaded))
        let yReloaded = try again.graph.compile(CompileOptions(mode: .onTheFly, threads: threads)).run(["x": x])["y"]!
        checks.identical("adapter written in PEFT format and reloaded gives bitwise identical outputs", yReloaded, yAdapter)
        let yAdapterCached = try withAdapter.graph.compile(CompileOptions(mode: .cached, threads: threads)).run(["x": x])["y"]!
        checks.close("with the adapter, on-the-fly and cached agree", yAdapter, yAdapterCached, tolerance: 1e-5)
    }

    /// Median wall time of one run, in seconds, after warm-up runs for at least 0.1 s (an idle
    /// vCPU and the OpenMP workers take several milliseconds to come up to speed).
    private func median(_ plan: ExecutablePlan, _ x: Tensor) throws -> Double {
        let warm = DispatchTime.now().uptimeNanoseconds
        repeat { _ = try plan.run(["x": x]) } while DispatchTime.now().uptimeNanoseconds - warm < 100_000_000
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try plan.run(["x": x])
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return times.sorted()[times.count / 2]
    }
}
