import XCTest
@testable import QLoRA

/// Gradient checkpointing (`CompileOptions.gradientCheckpointing` / `memoryBudget`): recomputed
/// segments give bitwise the gradients of the plan that keeps everything (same kernels on the same
/// inputs), the planned peak falls by what the recomputed segments kept, any thread count gives the
/// same bits, and a budget below the reachable minimum is an error naming it. The Llama case is the
/// PEFT + torch causal-LM reference run (../shared/reference/interop/causal_lm).
final class GradientCheckpointingTests: XCTestCase {
    /// x + Σ blocks: h ← h + down(silu(up(h))), every projection a 4-bit linear with LoRA.
    final class ResidualMLP {
        let blocks: [(up: QuantizedLinear, down: QuantizedLinear)]
        let store: ParameterStore
        let m: Int, dim: Int
        let x: Tensor, target: Tensor

        init(blocks count: Int = 4, m: Int = 48, dim: Int = 64, hidden: Int = 160) throws {
            var rng = SeededRandom(seed: 11)
            var config = QLoraConfig()
            config.rank = 8
            func linear(_ out: Int, _ inF: Int, _ name: String) throws -> QuantizedLinear {
                let l = try QuantizedLinear(weight: Tensor(shape: [out, inF], scalars: rng.floats(out * inF, scale: 0.15)), config: config,
                                            name: name, seed: rng.next())
                // B = 0 would make every LoRA gradient but dB vanish: give B values.
                try l.setLoraWeights(a: l.loraWeights.a, b: Tensor(shape: [out, config.rank], scalars: rng.floats(out * config.rank, scale: 0.1)))
                return l
            }
            blocks = try (0..<count).map { i in (try linear(hidden, dim, "blocks.\(i).up"), try linear(dim, hidden, "blocks.\(i).down")) }
            store = try ParameterStore(gathering: blocks.flatMap { $0.up.trainableParameters + $0.down.trainableParameters })
            self.m = m
            self.dim = dim
            x = try Tensor(shape: [m, dim], scalars: rng.floats(m * dim))
            target = try Tensor(shape: [m, dim], scalars: rng.floats(m * dim))
        }

        func plan(_ options: CompileOptions) throws -> ExecutablePlan {
            let g = Graph()
            let xv = g.input("x", shape: [m, dim])
            var h = xv
            for (i, b) in blocks.enumerated() {
                h = try g.add(h, try b.down(try g.silu(try b.up(h), label: "blocks.\(i).act")), label: "blocks.\(i).residual")
            }
            let loss = try g.mseLoss(h, target: g.input("target", shape: [m, dim]), label: "loss")
            g.output("loss", loss)
            try g.backward(from: loss, parameters: store, inputGradients: ["dx": xv])
            return try g.compile(options)
        }

        /// Loss, input gradient and every parameter gradient of one run.
        func run(_ plan: ExecutablePlan) throws -> [[Float]] {
            let out = try plan.run(["x": x, "target": target])
            return [out["loss"]!.scalars, out["dx"]!.scalars, store.flatGradients]
        }
    }

    func testCheckpointedGradientsAreBitwiseTheKeptOnesAndPeakFalls() throws {
        let mlp = try ResidualMLP()
        for threads in [1, 2] {
            let plain = try mlp.plan(CompileOptions(threads: threads))
            let every = try mlp.plan(CompileOptions(threads: threads, gradientCheckpointing: true))
            XCTAssertNil(plain.checkpointing)
            let report = try XCTUnwrap(every.checkpointing)
            // Cuts (values all of the activation stream passes through) close the segments: the first
            // block reads the graph input (a leaf, not an activation), so its up projection and its down
            // projection are cuts of their own; later blocks end at their residual add. Then the loss.
            XCTAssertEqual(report.segments.map { $0.first.split(separator: ".").prefix(3).joined(separator: ".") },
                           ["blocks.0.up", "blocks.0.act", "blocks.0.residual", "blocks.2.up", "blocks.3.up", "loss"], every.summary)
            XCTAssertEqual(report.segments.map(\.candidate), [true, true, true, true, false, false])
            XCTAssertEqual(report.recomputedSegments, 4, every.summary)
            XCTAssertTrue(every.steps.contains { $0.label.hasSuffix(".recompute") }, every.summary)
            let reference = try mlp.run(plain)
            for (a, b) in zip(try mlp.run(every), reference) { assertBitIdentical(a, b, "every segment recomputed, \(threads) threads") }
            if threads == 2 {
                let one = try mlp.run(try mlp.plan(CompileOptions(threads: 1, gradientCheckpointing: true)))
                for (a, b) in zip(one, try mlp.run(every)) { assertBitIdentical(a, b, "checkpointed: 1 vs 2 threads") }
            }
            // Across the turn from forward to backward the plan keeps the recomputed segments' values
            // fewer, less at most one kept cut per segment (a cut that, without recomputation, shared its
            // buffer with the in-place residual add after it); the peak (at that turn without
            // recomputation) falls by nearly as much: all but the recomputed copies of about one block.
            let saved = report.segments.filter(\.recomputed).map(\.savedBytes)
            let activation = mlp.m * 160 * 4   // the widest [m, hidden] f32 value
            XCTAssertGreaterThanOrEqual(keptAcrossTurn(plain) - keptAcrossTurn(every), saved.reduce(0, +) - saved.count * activation, every.summary)
            XCTAssertLessThanOrEqual(keptAcrossTurn(plain) - keptAcrossTurn(every), saved.reduce(0, +), every.summary)
            XCTAssertEqual(report.peakWithoutBytes, plain.plannedPeakBytes)
            XCTAssertLessThanOrEqual(every.plannedPeakBytes, plain.plannedPeakBytes - saved.reduce(0, +) + 2 * saved.max()!,
                                     "peak \(every.plannedPeakBytes) vs \(plain.plannedPeakBytes) without; saved \(saved)\n\(every.summary)")
            XCTAssertEqual(every.persistentBytes, plain.persistentBytes)
        }
    }

    /// Bytes of the arena buffers live from the forward's last step into the backward.
    func keptAcrossTurn(_ plan: ExecutablePlan) -> Int {
        let forward = plan.ir.forwardCount!
        let turn = plan.steps.filter { $0.node < forward }.count   // the memory plan counts steps from 1
        return plan.memory.buffers.filter { $0.start <= turn && $0.end > turn }.reduce(0) { $0 + $1.bytes }
    }

    func testBudgetRecomputesTheFewestSegmentsThatFitAndNamesTheMinimum() throws {
        let mlp = try ResidualMLP()
        let plain = try mlp.plan(CompileOptions(threads: 2))
        let every = try mlp.plan(CompileOptions(threads: 2, gradientCheckpointing: true))
        // A budget the plain plan meets: nothing recomputed, the plan is the plain one.
        let roomy = try mlp.plan(CompileOptions(threads: 2, memoryBudget: plain.plannedPeakBytes))
        XCTAssertNil(roomy.checkpointing)
        XCTAssertEqual(roomy.plannedPeakBytes, plain.plannedPeakBytes)
        // Between the two: some but not necessarily all segments, within the budget, same bits.
        let budget = (plain.plannedPeakBytes + every.plannedPeakBytes) / 2
        let fitted = try mlp.plan(CompileOptions(threads: 2, memoryBudget: budget))
        let report = try XCTUnwrap(fitted.checkpointing)
        XCTAssertLessThanOrEqual(fitted.plannedPeakBytes, budget, fitted.summary)
        XCTAssertGreaterThan(report.recomputedSegments, 0)
        XCTAssertEqual(report.budget, budget)
        // The largest savings go first.
        let order = report.segments.filter(\.recomputed).map(\.savedBytes).min()!
        XCTAssertTrue(report.segments.filter { !$0.recomputed && $0.candidate }.allSatisfy { $0.savedBytes <= order }, fitted.summary)
        let reference = try mlp.run(plain)
        for (a, b) in zip(try mlp.run(fitted), reference) { assertBitIdentical(a, b, "budget \(budget)") }
        // Below what recomputing every segment reaches: an error naming that minimum, which then works.
        XCTAssertThrowsError(try mlp.plan(CompileOptions(threads: 2, memoryBudget: every.plannedPeakBytes - 1))) { error in
            XCTAssertTrue("\(error)".contains("give a budget of at least \(every.plannedPeakBytes) bytes"), "\(error)")
        }
        XCTAssertEqual(try mlp.plan(CompileOptions(threads: 2, memoryBudget: every.plannedPeakBytes)).plannedPeakBytes, every.plannedPeakBytes)
        XCTAssertThrowsError(try mlp.plan(CompileOptions(threads: 2, memoryBudget: 0)))
        // An inference plan has no backward: a budget changes nothing.
        let g = Graph()
        g.output("y", try mlp.blocks[0].up(g.input("x", shape: [mlp.m, mlp.dim])))
        XCTAssertNil(try g.compile(CompileOptions(threads: 1, gradientCheckpointing: true)).checkpointing)
    }

    func testSizesParse() throws {
        XCTAssertEqual(try ByteSize.parse("512M", option: "--memory-budget"), 512 << 20)
        XCTAssertEqual(try ByteSize.parse("2G", option: "--memory-budget"), 2 << 30)
        XCTAssertEqual(try ByteSize.parse("1.5GiB", option: "--memory-budget"), 3 << 29)
        XCTAssertEqual(try ByteSize.parse("64k", option: "--memory-budget"), 65536)
        XCTAssertEqual(try ByteSize.parse("123456", option: "--memory-budget"), 123456)
        for bad in ["", "G", "-1G", "2X", "0", "nanM", "1e30G"] {
            XCTAssertThrowsError(try ByteSize.parse(bad, option: "--memory-budget"), bad) { XCTAssertTrue("\($0)".contains("--memory-budget"), "\($0)") }
        }
    }

    /// The tiny Llama of the interop reference, 5 AdamW steps with weight decay and clipping: every
    /// half decoder layer recomputed gives the same losses, norms and final adapter bits as keeping
    /// everything (which CausalLMTrainerTests checks against PEFT + torch), for 1 and 2 threads.
    /// CausalLMTrainerTests' run of the manifest's `name` (5 AdamW steps) with these compile options.
    func llamaRun(_ name: String, options compile: CompileOptions) throws -> (logs: [TrainingStepLog], store: ParameterStore) {
        let manifest = try JSONValue.parse(Reference.bytes("\(CausalLMTrainerTests.dir)/manifest.json"), file: "manifest.json", field: "$")
        guard let run = manifest["results"]?["runs"]?[name], let lr = run["optimizer"]?["lr"]?.doubleValue,
              let wd = run["optimizer"]?["weight_decay"]?.doubleValue else { throw XCTSkip("manifest has no run \(name)") }
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model, options: compile)
        let optimizer = try Optimizer(.adamW(learningRate: lr, weightDecay: wd), parameters: step.parameters)
        var options = TrainerOptions(steps: 5)
        options.maxGradNorm = run["clip_grad_norm_max_norm"]?.doubleValue
        options.threads = compile.threads
        let batches = try CausalLMBatches(inputIds: LlamaReferenceTests.inputIds(), labels: nil, batchSize: nil, source: "input_ids.i64")
        let trainer = try Trainer(step: step, batches: batches, optimizer: optimizer, options: options)
        var logs: [TrainingStepLog] = []
        try trainer.run { logs.append($0) }
        return (logs, step.parameters)
    }

    func testLlamaTrainingRunIsBitwiseTheSameWithCheckpointing() throws {
        let plain = try llamaRun("adamw_wd_clip", options: CompileOptions(threads: 1))
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model, options: CompileOptions(threads: 1, gradientCheckpointing: true))
        let plan = try step.plan(shape: [2, 7])
        let report = try XCTUnwrap(plan.checkpointing)
        // Two segments per decoder layer (attention, MLP: each closed by its residual add), the head, the loss.
        XCTAssertEqual(report.segments.count, 2 * model.layers.count + 2, plan.summary)
        XCTAssertGreaterThan(report.recomputedSegments, 0, plan.summary)
        // (The reference model is one layer on 14 tokens: kernel scratch and weights, not activations, set its peak.)
        XCTAssertLessThanOrEqual(plan.plannedPeakBytes, report.peakWithoutBytes, plan.summary)
        let losses = try Reference.floats("\(CausalLMTrainerTests.dir)/adamw_wd_clip.losses.f32")
        for threads in [1, 2] {
            let run = try llamaRun("adamw_wd_clip", options: CompileOptions(threads: threads, gradientCheckpointing: true))
            XCTAssertEqual(run.logs.map { $0.loss }, plain.logs.map { $0.loss }, "\(threads) threads")
            XCTAssertEqual(run.logs.map { $0.gradNorm }, plain.logs.map { $0.gradNorm }, "\(threads) threads")
            assertBitIdentical(run.store.flatValues, plain.store.flatValues, "trained adapter, \(threads) threads")
            for (i, log) in run.logs.enumerated() { XCTAssertEqual(log.loss, losses[i], accuracy: 1e-5 * losses[i], "torch loss before step \(i + 1)") }
        }
    }
}
