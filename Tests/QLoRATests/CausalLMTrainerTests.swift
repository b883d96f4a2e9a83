import Foundation
import XCTest
@testable import QLoRA

/// The Trainer on the Llama causal LM against PEFT + torch (../shared/reference/interop/causal_lm):
/// the three 5-step AdamW runs of the manifest — plain, weight decay + clipping at 1.0, and tight
/// clipping at 0.05 — losses, pre-clip gradient norms, the final adapter and the loss after it.
final class CausalLMTrainerTests: XCTestCase {
    static let dir = "interop/causal_lm"

    func run(_ name: String, threads: Int = 1) throws -> (logs: [TrainingStepLog], model: LlamaModel, store: ParameterStore) {
        let manifest = try JSONValue.parse(Reference.bytes("\(Self.dir)/manifest.json"), file: "manifest.json", field: "$")
        guard let run = manifest["results"]?["runs"]?[name], let lr = run["optimizer"]?["lr"]?.doubleValue,
              let wd = run["optimizer"]?["weight_decay"]?.doubleValue else { throw XCTSkip("manifest has no run \(name)") }
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model, options: CompileOptions(threads: threads))
        let optimizer = try Optimizer(.adamW(learningRate: lr, weightDecay: wd), parameters: step.parameters)
        var options = TrainerOptions(steps: 5)
        options.maxGradNorm = run["clip_grad_norm_max_norm"]?.doubleValue
        options.threads = threads
        let batches = try CausalLMBatches(inputIds: LlamaReferenceTests.inputIds(), labels: nil, batchSize: nil, source: "input_ids.i64")
        XCTAssertEqual(batches.batches[0].lossTerms, 12, "2 rows × 6 predicted positions")
        let trainer = try Trainer(step: step, batches: batches, optimizer: optimizer, options: options)
        var logs: [TrainingStepLog] = []
        try trainer.run { logs.append($0) }
        return (logs, model, step.parameters)
    }

    func testThreeAdamWRunsMatchTorch() throws {
        for name in ["adamw", "adamw_wd_clip", "adamw_wd_clip_tight"] {
            let (logs, model, store) = try run(name)
            let losses = try Reference.floats("\(Self.dir)/\(name).losses.f32"), norms = try Reference.floats("\(Self.dir)/\(name).grad_norms.f32")
            for (i, log) in logs.enumerated() {
                XCTAssertEqual(log.loss, losses[i], accuracy: 1e-5 * losses[i], "\(name): loss before step \(i + 1)")
                XCTAssertEqual(log.gradNorm, norms[i], accuracy: 1e-5 * norms[i], "\(name): pre-clip grad norm at step \(i + 1)")
            }
            let final = try SafeTensorsFile(url: Reference.url("\(Self.dir)/\(name).final.safetensors"))
            for p in store.parameters {
                let ref = try final.tensor("base_model.model.\(p.name).weight").scalars
                let worst = zip(p.tensor.scalars, ref).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-4, "\(name): final \(p.name), max abs diff \(worst)")
            }
            let after = try Reference.floats("\(Self.dir)/\(name).loss_after_final_step.f32")[0]
            let g = Graph()
            let ids = g.input("input_ids", shape: [2, 7], element: .int32)
            g.output("loss", try g.causalLMLoss(try model.record(inputIds: ids).logits, labels: ids))
            let loss = try g.compile().run([:], ids: ["input_ids": LlamaReferenceTests.inputIds()])["loss"]!.scalars[0]
            XCTAssertEqual(loss, after, accuracy: 1e-5 * after, "\(name): loss after the last step")
        }
    }

    func testTwoThreadsGiveTheSameBits() throws {
        let one = try run("adamw_wd_clip", threads: 1), two = try run("adamw_wd_clip", threads: 2)
        XCTAssertEqual(one.logs.map(\.loss), two.logs.map(\.loss))
        XCTAssertEqual(one.store.flatValues, two.store.flatValues)
    }

    /// Two micro-batches of one row each accumulate to the gradient of the two-row batch (the mean
    /// over all 12 trained positions), so the whole run matches the reference.
    func testAccumulatingRowsEqualsTheWholeBatch() throws {
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model)
        let optimizer = try Optimizer(.adamW(learningRate: 0.01, weightDecay: 0), parameters: step.parameters)
        var options = TrainerOptions(steps: 5)
        options.gradientAccumulation = 2
        options.shuffle = false
        let batches = try CausalLMBatches(inputIds: LlamaReferenceTests.inputIds(), labels: nil, batchSize: 1, source: "input_ids.i64")
        let trainer = try Trainer(step: step, batches: batches, optimizer: optimizer, options: options)
        var losses: [Float] = []
        try trainer.run { losses.append($0.loss) }
        let ref = try Reference.floats("\(Self.dir)/adamw.losses.f32")
        for i in 0..<5 { XCTAssertEqual(losses[i], ref[i], accuracy: 1e-5 * ref[i], "loss before step \(i + 1)") }
    }

    func testBadBatchesAreNamed() throws {
        let ids = try IntTensor(shape: [1, 3], scalars: [1, 2, 3])
        XCTAssertThrowsError(try CausalLMBatches(inputIds: ids, labels: IntTensor(shape: [1, 3], scalars: [-100, -100, -100]), batchSize: nil, source: "d.safetensors")) {
            XCTAssertTrue("\($0)".contains("no row has a trained label"), "\($0)")
        }
        XCTAssertThrowsError(try CausalLMBatches(inputIds: ids, labels: IntTensor(shape: [3], scalars: [1, 2, 3]), batchSize: nil, source: "d.safetensors"))
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model)
        let bad = try CausalLMBatches(inputIds: IntTensor(shape: [1, 3], scalars: [1, 99, 3]), labels: nil, batchSize: nil, source: "d")
        XCTAssertThrowsError(try step.run(bad.batches[0])) { XCTAssertTrue("\($0)".contains("99"), "\($0)") }
    }
}
