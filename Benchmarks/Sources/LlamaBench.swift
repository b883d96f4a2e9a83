import Foundation
import QLoRA

/// `qlora-bench --llama MODEL.gguf|DIR [--threads 2] [--runs 5] [--json OUT]`: a Llama model
/// (converted to NF4, block 64, double quant, f32-exact on-the-fly mode) timed the way
/// Benchmarks/peer/smollm2_peer.py times transformers and llama.cpp: prefill of one 128-token
/// prompt, greedy decode of 32 tokens after a 16-token prompt, and one QLoRA training step
/// (LoRA r = 16, alpha 32 on all 7 projections, sequence 256, batch 1: forward, causal-LM loss,
/// backward and AdamW in one plan). Medians of `runs` after a warm-up.
enum LlamaBench {
    /// `trainOnly` skips prefill and decode (the peak RSS is then the training step's alone);
    /// `checkpointing` compiles the step with every segment recomputed.
    static func run(model path: String, threads: Int, runs: Int, json: String?, trainOnly: Bool = false, checkpointing: Bool = false, profile: Bool = false,
                    computeType: ComputeType = .float32) throws {
        let url = URL(fileURLWithPath: path)
        var quantization = QuantizeOptions()
        quantization.threads = threads
        let options = CompileOptions(threads: threads, computeType: computeType)
        // Token ids from the benchmarks' random floats (any ids do: the timing does not depend on them).
        let prompt = randomFloats(256, seed: 7).map { Int32((($0 + 1) / 2 * 49151).rounded(.down)) }
        var results: [(String, Double)] = []

        var tokens = prompt
        if !trainOnly {
            let model = try LlamaModel.load(url, quantization: quantization)
            let vocab = model.config.vocabSize
            tokens = prompt.map { $0 % Int32(vocab) }
            let generator = try LlamaGenerator(model: model, capacity: 160, options: options)
            let prefill = try median(runs) { try generator.generate(prompt: Array(tokens.prefix(128)), maxNewTokens: 1).prefillTokensPerSecond }
            results.append(("prefill-128", prefill))
            let decode = try median(max(1, runs / 2 + 1)) {
                try generator.generate(prompt: Array(tokens.prefix(16)), maxNewTokens: 33).decodeTokensPerSecond
            }
            results.append(("decode", decode))
            print(String(format: "llama %@ threads=%d: prefill-128 %.1f tokens/s, decode %.1f tokens/s", url.lastPathComponent, threads, prefill, decode))
        }

        let trainable = try LlamaTrainStepCase.load(url, quantization: quantization)
        tokens = prompt.map { $0 % Int32(trainable.config.vocabSize) }
        let seq = LlamaTrainStepCase.seq
        let g = try LlamaTrainStepCase.graph(trainable)
        var trainOptions = options
        trainOptions.gradientCheckpointing = checkpointing
        let plan = try g.compile(trainOptions)
        let feed = ["input_ids": try IntTensor(shape: [1, seq], scalars: Array(tokens.prefix(seq)))]
        _ = try plan.run([:], ids: feed)
        TrainStepBench.resetPeak()
        let stepRate = try median(max(1, runs / 2 + 1)) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try plan.run([:], ids: feed)
            return Double(seq) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        results.append(("train-step-256", stepRate))
        if profile {
            let profiler = StepProfiler()
            try profiler.recording { for _ in 0..<max(1, runs / 2 + 1) { _ = try plan.run([:], ids: feed) } }
            print(profiler.report())
        }
        let peak = TrainStepBench.peakMB()
        print(String(format: "llama %@ threads=%d compute=%@: QLoRA train step (r=16, all projections, seq 256) %.1f tokens/s, peak RSS %.0f MB, planned peak %.1f MB%@",
                     url.lastPathComponent, threads, computeType.rawValue as NSString, stepRate, peak, Double(plan.plannedPeakBytes) / 1_048_576,
                     (plan.checkpointing.map { " (gradient checkpointing: \($0.recomputedSegments) of \($0.segments.count) segments recomputed; without %.1f MB)" }
                        .map { String(format: $0, Double(plan.checkpointing!.peakWithoutBytes) / 1_048_576) } ?? "") as NSString))

        if let json {
            let body = "{" + (["\"threads\": \(threads)"] + results.map { "\"\($0.0)\": \($0.1)" }).joined(separator: ", ") + "}\n"
            let tmp = json + ".tmp"
            try Data(body.utf8).write(to: URL(fileURLWithPath: tmp))
            guard rename(tmp, json) == 0 else { throw QLoraError.invalidArgument("cannot rename \(tmp) to \(json): errno \(errno)") }
        }
    }

    /// The median of `runs` calls of `rate` after one warm-up call.
    static func median(_ runs: Int, _ rate: () throws -> Double) throws -> Double {
        _ = try rate()
        let xs = try (0..<max(1, runs)).map { _ in try rate() }.sorted()
        return xs[xs.count / 2]
    }
}
