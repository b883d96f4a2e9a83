import Foundation
import QLoRA

/// `qlora-bench --scale DIR --phase inference|train [--threads 2] [--json out.json]`: a large
/// (e.g. `qlora synth` Llama-2-7B-shaped) 4-bit model directory, one phase per process so each
/// phase's peak resident memory is its own (Benchmarks/scale/run_7b.sh runs both).
/// - inference: the prefill of 512 tokens, then `rounds` decodes (greedy, 8 tokens after a 16-token
///   prompt) interleaved with streaming reads of a 512 MiB buffer; each round's decode tokens/s
///   against its bandwidth bound (weight bytes read per token ÷ the mean of the reads right before
///   and after it); the median of the rounds' ratios is the reported fraction of the bound.
/// - train: one QLoRA step (LoRA r = 16, alpha 32 on all 7 projections, sequence 256, batch 1:
///   forward, causal-LM loss, backward, AdamW in one plan): step time and the peak resident memory
///   of the process (VmHWM: load and step), and of the step alone.
/// Single runs (a 7B step takes minutes on 2 cores): the numbers are one sample each.
enum ScaleBench {
    static func run(model path: String, phase: String, threads: Int, rounds: Int, json: String?, profile: Bool = false,
                    computeType: ComputeType = .float32) throws {
        let url = URL(fileURLWithPath: path)
        var quantization = QuantizeOptions()
        quantization.threads = threads
        let options = CompileOptions(threads: threads, computeType: computeType)
        var results: [(String, Double)] = [("threads", Double(threads))]
        var lists: [(String, [Double])] = []
        let t0 = now()
        switch phase {
        case "inference":
            let model = try LlamaModel.load(url, quantization: quantization)
            results.append(("load_s", now() - t0))
            results.append(("load_peak_rss_mb", TrainStepBench.peakMB()))
            let c = model.config
            // Bytes one decode step reads: every projection (codes + statistics), the final norm and
            // lm_head (f32; the embedding matrix when tied), the norms; one embedding row.
            var bytes = model.layers.flatMap(\.projections).reduce(0) { $0 + $1.weightMemoryBytes }
            bytes += c.vocabSize * c.hiddenSize * 4 + (2 * c.layers + 1) * c.hiddenSize * 4 + c.hiddenSize * 4
            results.append(("weight_bytes_per_token", Double(bytes)))
            let tokens = (0..<512).map { Int32(($0 * 7919 + 13) % c.vocabSize) }
            let generator = try LlamaGenerator(model: model, capacity: 520, options: options)
            let c0 = cpuSeconds(), w0 = now()
            let prefill = try generator.generate(prompt: tokens, maxNewTokens: 1).prefillTokensPerSecond
            results += [("prefill_512_tokens_per_s", prefill), ("prefill_cores_used", (cpuSeconds() - c0) / (now() - w0))]
            print(String(format: "prefill 512 tokens: %.2f tokens/s", prefill))
            // Interleaved rounds: read, decode, read, decode, …, read. Round i's bound uses the mean of
            // the reads right before and right after its decode (a shared machine's bandwidth drifts
            // within minutes; one read before one decode made the ratio swing 0.63–0.93x).
            let bench = Bench(quick: true, threadCounts: [threads])
            let read = { StreamRead.bandwidth(bench, bytes: 512 << 20, threads: threads) }
            var reads = [read()], decodes: [Double] = [], cores: [Double] = []
            for r in 0..<rounds {
                let c1 = cpuSeconds(), w1 = now()
                decodes.append(try generator.generate(prompt: Array(tokens.prefix(16)), maxNewTokens: 9).decodeTokensPerSecond)
                cores.append((cpuSeconds() - c1) / (now() - w1))
                reads.append(read())
                let gbs = (reads[r] + reads[r + 1]) / 2
                print(String(format: "round %d: decode %.3f tokens/s; read %.2f / %.2f GB/s before / after -> bound %.3f tokens/s = %.2fx (cores used %.2f)",
                             r + 1, decodes[r], reads[r], reads[r + 1], gbs * 1e9 / Double(bytes), decodes[r] * Double(bytes) / (gbs * 1e9), cores[r]))
            }
            if profile { // time per plan step over 9 one-token runs (a one-token prompt, then 8 decoded tokens)
                let profiler = StepProfiler()
                _ = try profiler.recording { try generator.generate(prompt: Array(tokens.prefix(1)), maxNewTokens: 9) }
                print(profiler.report(top: 40))
            }
            let fractions = (0..<rounds).map { decodes[$0] * Double(bytes) / ((reads[$0] + reads[$0 + 1]) / 2 * 1e9) }
            let gbs = DecodeKernelBench.median(reads), decode = DecodeKernelBench.median(decodes)
            let bound = gbs * 1e9 / Double(bytes)
            let fraction = DecodeKernelBench.median(fractions)
            results += [("rounds", Double(rounds)), ("stream_read_gb_s", gbs), ("stream_read_min_gb_s", reads.min()!), ("stream_read_max_gb_s", reads.max()!),
                        ("decode_tokens_per_s", decode), ("decode_min_tokens_per_s", decodes.min()!), ("decode_max_tokens_per_s", decodes.max()!),
                        ("decode_bound_tokens_per_s", bound), ("decode_fraction_of_bound", fraction),
                        ("decode_fraction_min", fractions.min()!), ("decode_fraction_max", fractions.max()!),
                        ("decode_run_cores_used", DecodeKernelBench.median(cores))]
            lists = [("stream_read_gb_s_each", reads), ("decode_tokens_per_s_each", decodes), ("decode_fraction_each", fractions)]
            print(String(format: "decode: median %.3f tokens/s; median read %.2f GB/s (%.2f GB per token) -> bound %.3f tokens/s; median of the %d rounds' ratios %.2fx (%.2f–%.2f)",
                         decode, gbs, Double(bytes) / 1e9, bound, rounds, fraction, fractions.min()!, fractions.max()!))
        case "train":
            let model = try LlamaTrainStepCase.load(url, quantization: quantization)
            results.append(("load_s", now() - t0))
            results.append(("load_peak_rss_mb", TrainStepBench.peakMB()))
            let seq = LlamaTrainStepCase.seq
            let g = try LlamaTrainStepCase.graph(model)
            let t1 = now()
            let plan = try g.compile(options)
            results.append(("compile_s", now() - t1))
            let ids = (0..<seq).map { Int32(($0 * 7919 + 13) % model.config.vocabSize) }
            let feed = ["input_ids": try IntTensor(shape: [1, seq], scalars: ids)]
            TrainStepBench.resetPeak()
            let t2 = now(), c2 = cpuSeconds()
            let out = try plan.run([:], ids: feed)
            let step = now() - t2
            results += [("step_s", step), ("step_cpu_s", cpuSeconds() - c2), ("step_cores_used", (cpuSeconds() - c2) / step), ("step_tokens_per_s", Double(seq) / step), ("step_peak_rss_mb", TrainStepBench.peakMB()),
                        ("loss", Double(out["loss"]?.scalars.first ?? .nan))]
            print(String(format: "QLoRA step (r=16, all projections, seq 256): %.1f s, peak RSS of the step %.0f MB", step, TrainStepBench.peakMB()))
        default:
            throw QLoraError.invalidArgument("--phase must be inference or train, got \(phase)")
        }
        let processPeak = TrainStepBench.peakMB()
        if processPeak >= 0 { results.append(("process_peak_rss_mb_since_reset", processPeak)) }
        print(results.map { "\($0.0)=\($0.1)" }.joined(separator: " "))
        if let json {
            let number = { (v: Double) in v.isFinite ? "\(v)" : "null" }
            let fields = results.map { "\"\($0.0)\": \(number($0.1))" }
                + lists.map { "\"\($0.0)\": [\($0.1.map(number).joined(separator: ", "))]" }
            try ("{" + fields.joined(separator: ", ") + "}\n").write(toFile: json, atomically: true, encoding: .utf8) // temp file + rename
        }
    }

    /// User + system CPU seconds of the process: with the wall time, how much of the machine the
    /// phase got (the machine is shared; 2.0 = both cores all the time).
    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}
