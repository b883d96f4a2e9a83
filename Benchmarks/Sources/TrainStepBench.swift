import Foundation
import QLoRA

/// `qlora-bench --train-step`: one QLoRA training step — forward, mse loss, backward and AdamW —
/// of one 4096→11008 NF4 (double quant, block 64) layer with a rank-16 LoRA on M = 128 tokens,
/// the case Benchmarks/peer/train_step_peer.py times for bitsandbytes 0.50.2 + PEFT. Prints the
/// median step time, tokens/s and the peak resident memory of the steps (VmHWM after resetting it
/// once setup is done, so building the random f32 weight does not count), against the f32 base
/// weight's size. Run it in its own process: the peak is per process.
enum TrainStepBench {
    static func run(threads: Int, runs: Int, checkpointing: Bool = false) throws {
        let k = 4096, n = 11008, m = 128, r = 16
        var config = QLoraConfig()
        config.rank = r
        config.alpha = 32
        let layer: QuantizedLinear
        do {
            let w = try Tensor(shape: [n, k], scalars: randomFloats(n * k, seed: 1, scale: 0.02))
            let q = try QuantizedTensor.quantize(w, quantType: .nf4, blockSize: 64, doubleQuant: true, name: "proj.weight", threads: threads)
            layer = try QuantizedLinear(quantizedWeight: q, bias: Tensor(shape: [n], scalars: randomFloats(n, seed: 2, scale: 0.01)),
                                        config: config, name: "proj", seed: 3)
        }
        try layer.setLoraWeights(a: layer.loraWeights.a, b: Tensor(shape: [n, r], scalars: randomFloats(n * r, seed: 4, scale: 0.02)))
        let x = try Tensor(shape: [m, k], scalars: randomFloats(m * k, seed: 5))
        let target = try Tensor(shape: [m, n], scalars: randomFloats(m * n, seed: 6))
        let g = Graph()
        let y = try layer(g.input("x", shape: [m, k]))
        let loss = try g.mseLoss(y, target: g.input("target", shape: [m, n]), label: "loss")
        g.output("loss", loss)
        let store = try ParameterStore(gathering: layer.trainableParameters)
        try g.backward(from: loss, parameters: store)
        let plan = try g.compile(CompileOptions(threads: threads, gradientCheckpointing: checkpointing))
        let step = PlanTrainingStep(plan: plan, parameters: store, lossOutput: "loss")
        let optimizer = try Optimizer(.adamW(learningRate: 1e-4), parameters: store)
        let batch = TrainingBatch(feeds: ["x": x, "target": target], lossTerms: m * n, tokens: m)
        func once() throws {
            _ = try step.run(batch)
            optimizer.step(threads: threads)
        }
        try once()
        resetPeak()
        var samples: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try once()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        samples.sort()
        let ms = samples[samples.count / 2]
        let peak = peakMB()
        print(String(format: "qlora train-step 4096x11008 nf4 r=16 M=128 threads=%d: %.1f ms, %.0f tokens/s, peak RSS %.0f MB (f32 base weight %.0f MB), planned peak %.1f MB%@",
                     threads, ms, Double(m) / (ms / 1000), peak, Double(n * k * 4) / 1_048_576, Double(plan.plannedPeakBytes) / 1_048_576,
                     (plan.checkpointing.map { ", gradient checkpointing: \($0.recomputedSegments) of \($0.segments.count) segments recomputed" } ?? "") as NSString))
    }

    /// Resets the process's peak RSS (Linux: "5" into /proc/self/clear_refs).
    static func resetPeak() {
        if let h = FileHandle(forWritingAtPath: "/proc/self/clear_refs") {
            h.write(Data("5".utf8))
            try? h.close()
        }
    }

    /// VmHWM of /proc/self/status in MB.
    static func peakMB() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }
}
