import Foundation
import XCTest
@testable import QLoRA

/// The `Trainer` on one 4-bit layer fitted by mse: it learns, accumulation equals a larger batch,
/// resume from a checkpoint and the thread count leave the bits unchanged, schedules follow
/// transformers' formulas.
final class TrainerTests: XCTestCase {
    static let inF = 32, outF = 24

    /// A deterministic base weight, inputs and a target the base plus a random rank-2 update produce.
    struct Problem {
        var weight: Tensor
        var x: Tensor
        var target: Tensor

        init(rows: Int, seed: UInt64 = 3) throws {
            var rng = SeededRandom(seed: seed)
            weight = try Tensor(shape: [outF, inF], scalars: rng.floats(outF * inF, scale: 0.5))
            x = try Tensor(shape: [rows, inF], scalars: rng.floats(rows * inF))
            // target = x·(dequant(W) + U·V)ᵀ with a random rank-2 U [out, 2], V [2, in].
            let q = try QuantizedTensor.quantize(weight, quantType: .nf4, blockSize: 64, doubleQuant: true, name: "w").dequantize(threads: 1)
            let u = rng.floats(outF * 2, scale: 0.5), v = rng.floats(2 * inF, scale: 0.5)
            var t = [Float](repeating: 0, count: rows * outF)
            for r in 0..<rows {
                for o in 0..<outF {
                    var s = 0.0
                    for i in 0..<inF {
                        var w = Double(q.scalars[o * inF + i])
                        for k in 0..<2 { w += Double(u[o * 2 + k]) * Double(v[k * inF + i]) }
                        s += w * Double(x.scalars[r * inF + i])
                    }
                    t[r * outF + o] = Float(s)
                }
            }
            target = try Tensor(shape: [rows, outF], scalars: t)
        }
    }

    /// A layer, its training step over batches of `batchRows`, and an optimizer.
    struct Setup {
        var layer: QuantizedLinear
        var store: ParameterStore
        var step: PlanTrainingStep
        var optimizer: Optimizer
        var dropout: LoraDropout?
    }

    static func setup(_ problem: Problem, batchRows: Int, method: Optimizer.Method, threads: Int, dropout: Float = 0,
                      rank: Int = 4, seed: UInt64 = 9) throws -> Setup {
        var config = QLoraConfig()
        config.rank = rank
        config.alpha = 8
        let layer = try QuantizedLinear(weight: problem.weight, config: config, name: "proj", seed: seed)
        let context = dropout > 0 ? try LoraDropout(probability: dropout, seed: seed) : nil
        layer.dropout = context
        let g = Graph()
        let y = try layer(g.input("x", shape: [batchRows, inF]))
        let loss = try g.mseLoss(y, target: g.input("target", shape: [batchRows, outF]), label: "loss")
        g.output("loss", loss)
        let store = try ParameterStore(gathering: layer.trainableParameters)
        try g.backward(from: loss, parameters: store)
        let plan = try g.compile(CompileOptions(threads: threads))
        return Setup(layer: layer, store: store, step: PlanTrainingStep(plan: plan, parameters: store, lossOutput: "loss"),
                     optimizer: try Optimizer(method, parameters: store), dropout: context)
    }

    static func batches(_ p: Problem, batchRows: Int?) throws -> TensorBatches {
        try TensorBatches(["x": p.x, "target": p.target], batchSize: batchRows, lossKey: "target", source: "problem")
    }

    func testLearnsALowRankTargetAndNeverTouchesTheBaseWeight() throws {
        let p = try Problem(rows: 64)
        let s = try Self.setup(p, batchRows: 16, method: .adamW(learningRate: 0.02, weightDecay: 0), threads: 2)
        let packedBefore = s.layer.quantizedWeight.packed
        var options = TrainerOptions(steps: 300)
        options.seed = 1
        let trainer = try Trainer(step: s.step, batches: Self.batches(p, batchRows: 16), optimizer: s.optimizer, options: options)
        var losses: [Float] = []
        try trainer.run { losses.append($0.loss) }
        XCTAssertEqual(losses.count, 300)
        // The loss of the whole data set before and after.
        let whole = try Self.setup(p, batchRows: 64, method: .sgd(learningRate: 0), threads: 1)
        let start = try whole.step.run(TrainingBatch(feeds: ["x": p.x, "target": p.target], lossTerms: 1, tokens: 1))
        try whole.layer.setLoraWeights(a: s.layer.loraWeights.a, b: s.layer.loraWeights.b)
        let end = try whole.step.run(TrainingBatch(feeds: ["x": p.x, "target": p.target], lossTerms: 1, tokens: 1))
        XCTAssertLessThan(end, 0.01 * start, "mse \(start) → \(end)")
        XCTAssertEqual(s.layer.quantizedWeight.packed, packedBefore, "the 4-bit base weight's bytes never change")
    }

    /// Four micro-batches of 8 rows, accumulated, give the gradient (and SGD step) of one batch of 32.
    func testAccumulatingFourMicroBatchesEqualsOneBatchFourTimesLarger() throws {
        let p = try Problem(rows: 32)
        for method in [Optimizer.Method.sgd(learningRate: 0.1), .adamW(learningRate: 0.01)] {
            let big = try Self.setup(p, batchRows: 32, method: method, threads: 1)
            let small = try Self.setup(p, batchRows: 8, method: method, threads: 1)
            // Non-zero B, so A gets a gradient too.
            var rng = SeededRandom(seed: 12)
            let b = try Tensor(shape: [Self.outF, 4], scalars: rng.floats(Self.outF * 4, scale: 0.2))
            for s in [big, small] { try s.layer.setLoraWeights(a: s.layer.loraWeights.a, b: b) }
            var one = TrainerOptions(steps: 1)
            one.shuffle = false
            var four = one
            four.gradientAccumulation = 4
            var bigLoss: Float = 0, smallLoss: Float = 0
            try Trainer(step: big.step, batches: Self.batches(p, batchRows: nil), optimizer: big.optimizer, options: one).run { bigLoss = $0.loss }
            try Trainer(step: small.step, batches: Self.batches(p, batchRows: 8), optimizer: small.optimizer, options: four).run { smallLoss = $0.loss }
            XCTAssertEqual(smallLoss, bigLoss, accuracy: 1e-6 * bigLoss)
            for i in 0..<2 {
                let a = small.store.gradient(i).scalars, b = big.store.gradient(i).scalars
                let scale = b.map(abs).max()!
                XCTAssertGreaterThan(scale, 0)
                for (u, v) in zip(a, b) { XCTAssertEqual(u, v, accuracy: 1e-6 * scale, "\(method) gradient \(i)") }
            }
            let pa = small.store.flatValues, pb = big.store.flatValues
            for (u, v) in zip(pa, pb) { XCTAssertEqual(u, v, accuracy: 1e-6) }
        }
    }

    /// A run over shuffled batches with accumulation, clipping, dropout, warm-up and cosine decay.
    func fullRun(threads: Int, steps: Int, checkpointEvery: Int? = nil, directory: URL? = nil,
                 resumeFrom: URL? = nil, stopAfter: Int? = nil) throws -> (values: [Float], logs: [TrainingStepLog]) {
        let p = try Problem(rows: 48)
        let s = try Self.setup(p, batchRows: 8, method: .adamW(learningRate: 0.02), threads: threads, dropout: 0.2)
        var options = TrainerOptions(steps: steps)
        options.gradientAccumulation = 2
        options.maxGradNorm = 0.5
        options.schedule = .cosine
        options.warmupSteps = 2
        options.seed = 77
        options.threads = threads
        options.checkpointEvery = checkpointEvery
        options.checkpointDirectory = directory
        let trainer = try Trainer(step: s.step, batches: Self.batches(p, batchRows: 8), optimizer: s.optimizer, dropout: s.dropout, options: options)
        trainer.writeAdapter = { dir in
            let (a, b) = s.layer.loraWeights
            try LoraAdapter(config: LoraAdapterConfig(r: 4, loraAlpha: 8, targetModules: ["proj"]), weights: ["proj": (a, b)]).write(to: dir)
        }
        if let resumeFrom { try trainer.resume(from: resumeFrom) }
        var logs: [TrainingStepLog] = []
        struct Stop: Error {}
        do {
            try trainer.run { log in
                logs.append(log)
                if let stopAfter, log.step == stopAfter { throw Stop() }
            }
        } catch is Stop {}
        return (s.store.flatValues, logs)
    }

    func testResumeFromACheckpointEndsWithTheSameBits() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try fullRun(threads: 1, steps: 8)
        // Interrupted after step 5 (a checkpoint every 3 steps: the last is checkpoint-3).
        _ = try fullRun(threads: 1, steps: 8, checkpointEvery: 3, directory: dir, stopAfter: 5)
        let checkpoint = dir.appendingPathComponent("checkpoint-3")
        for f in ["adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "trainer_state.safetensors"] {
            XCTAssert(FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent(f).path), f)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("checkpoint-6").path))
        let resumed = try fullRun(threads: 1, steps: 8, resumeFrom: checkpoint)
        XCTAssertEqual(resumed.logs.map(\.step), [4, 5, 6, 7, 8])
        assertBitIdentical(resumed.values, full.values, "resumed vs uninterrupted parameters")
        XCTAssertEqual(resumed.logs.map(\.loss.bitPattern), full.logs.suffix(5).map(\.loss.bitPattern))
        // The checkpoint's adapter is the state after step 3.
        let adapter = try LoraAdapter(directory: checkpoint)
        XCTAssertEqual(adapter.modules["proj"]?.a.shape, [4, Self.inF])
    }

    func testOneAndTwoThreadsGiveTheSameBitsForAWholeRun() throws {
        let one = try fullRun(threads: 1, steps: 6), two = try fullRun(threads: 2, steps: 6)
        assertBitIdentical(one.values, two.values, "parameters after 6 steps, 1 vs 2 threads")
        XCTAssertEqual(one.logs.map(\.gradNorm.bitPattern), two.logs.map(\.gradNorm.bitPattern))
        // The run really clipped, warmed up and decayed.
        XCTAssertEqual(one.logs[0].learningRate, 0)
        XCTAssertEqual(one.logs[1].learningRate, 0.01, accuracy: 1e-12)
        XCTAssertEqual(one.logs[2].learningRate, 0.02, accuracy: 1e-12)
        XCTAssertLessThan(one.logs[5].learningRate, 0.02)
    }

    /// transformers' get_*_schedule_with_warmup, written out for W = 10, T = 100.
    func testSchedulesFollowTransformers() throws {
        let linear = try LearningRateSchedule(.linear, warmupSteps: 10, totalSteps: 100)
        let cosine = try LearningRateSchedule(.cosine, warmupSteps: 10, totalSteps: 100)
        let constant = try LearningRateSchedule(.constant, warmupSteps: 10, totalSteps: 100)
        for step in [0, 1, 5, 9, 10, 11, 50, 99, 100] {
            let warm = Double(step) / 10
            let progress = Double(step - 10) / 90
            XCTAssertEqual(linear.multiplier(afterSteps: step), step < 10 ? warm : max(0, Double(100 - step) / 90), accuracy: 1e-15)
            XCTAssertEqual(cosine.multiplier(afterSteps: step), step < 10 ? warm : max(0, 0.5 * (1 + cos(Double.pi * progress))), accuracy: 1e-15)
            XCTAssertEqual(constant.multiplier(afterSteps: step), step < 10 ? warm : 1)
        }
        XCTAssertEqual(try LearningRateSchedule(.constant, totalSteps: 5).learningRate(step: 1, base: 0.1), 0.1)
        XCTAssertThrowsError(try LearningRateSchedule(.linear, warmupSteps: -1, totalSteps: 5))
        XCTAssertEqual(try TrainerOptions(epochs: 3, batches: 5, gradientAccumulation: 2).steps, 8)
        XCTAssertThrowsError(try TrainerOptions(epochs: 0, batches: 5))
    }

    func testTensorBatchesSplitTheLeadingDimension() throws {
        let x = try Tensor(shape: [5, 2], scalars: (0..<10).map(Float.init)), t = try Tensor(shape: [5, 1], scalars: (0..<5).map(Float.init))
        let b = try TensorBatches(["x": x, "target": t], batchSize: 2, lossKey: "target", source: "d")
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(b.droppedRows, 1)
        let second = try b.batch(1)
        XCTAssertEqual(second.feeds["x"]?.scalars, [4, 5, 6, 7])
        XCTAssertEqual(second.feeds["target"]?.scalars, [2, 3])
        XCTAssertEqual(second.lossTerms, 2)
        XCTAssertEqual(second.tokens, 2)
        // One batch without a size, whatever the shapes; mismatched leading sizes only matter when splitting.
        let whole = try TensorBatches(["x": x, "target": try Tensor(shape: [1], scalars: [0])], batchSize: nil, lossKey: "target", source: "d")
        XCTAssertEqual(whole.count, 1)
        XCTAssertThrowsError(try TensorBatches(["x": x, "target": try Tensor(shape: [4, 1], scalars: [0, 0, 0, 0])], batchSize: 2, lossKey: "target", source: "d"))
        XCTAssertThrowsError(try TensorBatches(["x": x, "target": t], batchSize: 6, lossKey: "target", source: "d"))
    }
}
