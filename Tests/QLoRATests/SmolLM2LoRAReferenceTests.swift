import Foundation
import XCTest
@testable import QLoRA

/// SmolLM2-135M-Instruct with NF4 projections (the GGUF `make model` fetches, converted at load)
/// and a rank-8 adapter on q_proj/v_proj, against transformers + bitsandbytes + PEFT
/// (../shared/reference/smollm2/lora, manifest `lora`): two chats of 56 tokens with
/// assistant-only labels, the loss and every LoRA gradient at the initial adapter, then three
/// torch AdamW steps (lr 1e-3, no weight decay, no clipping) on the same batch — losses,
/// pre-step gradient norms and the final adapter.
final class SmolLM2LoRAReferenceTests: XCTestCase {
    static let dir = "smollm2/lora"

    struct Batch { let ids: IntTensor, labels: IntTensor }

    /// The manifest's `lora.data`: input_ids and labels [2, 56] (-100 = not trained).
    func batch() throws -> Batch {
        let manifest = try JSONValue.parse(Reference.bytes("smollm2/manifest.json"), file: "manifest.json", field: "$")
        func rows(_ key: String) throws -> [Int32] {
            guard case let .array(rows)? = manifest["lora"]?["data"]?[key] else { throw XCTSkip("manifest lora.data.\(key) missing") }
            return rows.flatMap { row -> [Int32] in
                guard case let .array(v) = row else { return [] }
                return v.compactMap(\.doubleValue).map { Int32($0) }
            }
        }
        let ids = try rows("input_ids"), labels = try rows("labels")
        XCTAssertEqual(ids.count, 2 * 56)
        XCTAssertEqual(labels.count, 2 * 56)
        return Batch(ids: try IntTensor(shape: [2, 56], scalars: ids), labels: try IntTensor(shape: [2, 56], scalars: labels))
    }

    func model() throws -> LlamaModel {
        let file = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw XCTSkip("\(file.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        return try LlamaModel.load(file, adapter: LoraAdapter(directory: Reference.url("\(Self.dir)/adapter_init")))
    }

    func plan(_ m: LlamaModel, optimizer: Optimizer? = nil, store: ParameterStore) throws -> ExecutablePlan {
        let g = Graph()
        let ids = g.input("input_ids", shape: [2, 56], element: .int32)
        let labels = g.input("labels", shape: [2, 56], element: .int32)
        let loss = try g.causalLMLoss(try m.record(inputIds: ids).logits, labels: labels, label: "loss")
        g.output("loss", loss)
        if let optimizer { try g.backward(from: loss, optimizer: optimizer) } else { try g.backward(from: loss, parameters: store) }
        return try g.compile()
    }

    func pefKey(_ p: ParameterStorage) -> String { "base_model.model.\(p.name).weight" }

    func testLossAndEveryLoraGradientMatchPEFT() throws {
        let m = try model(), b = try batch()
        XCTAssertEqual(m.loraLayers.count, 60)
        let store = try ParameterStore(gathering: m.trainableParameters)
        let loss = try plan(m, store: store).run([:], ids: ["input_ids": b.ids, "labels": b.labels])["loss"]!.scalars[0]
        let ref = try Reference.floats("\(Self.dir)/losses.f32")[0]
        XCTAssertEqual(loss, ref, accuracy: 1e-5 * ref, "loss at the initial adapter")
        let grads = try SafeTensorsFile(url: Reference.url("\(Self.dir)/grads_step0.safetensors"))
        XCTAssertEqual(grads.names.count, 120)
        XCTAssertEqual(store.parameters.count, 120)
        // Measured here: loss 3.4e-6 relative (the logits of this model agree to ~1.5e-6 of max|logit|);
        // gradients 1.2e-4 of each tensor's norm at worst, 1.4e-4 of its max element — float32 noise
        // through 30 layers and a 49152-way softmax, largest near the output (layers 27-29), not a
        // drift that grows with depth.
        for (p, grad) in zip(store.parameters, store.gradients) {
            let r = try grads.tensor(pefKey(p)).scalars, g = grad.tensor.scalars
            assertClose(g, r, relative: 3e-4, "gradient of \(p.name)")
            let err = zip(g, r).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }.squareRoot()
            let norm = r.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            XCTAssertLessThanOrEqual(err, 3e-4 * norm, "gradient of \(p.name): error norm \(err) vs norm \(norm)")
        }
    }

    func testThreeAdamWStepsMatchPEFT() throws {
        let m = try model(), b = try batch()
        let store = try ParameterStore(gathering: m.trainableParameters)
        let optimizer = try Optimizer(.adamW(learningRate: 1e-3, weightDecay: 0), parameters: store)
        let plan = try plan(m, optimizer: optimizer, store: store)
        let refLosses = try Reference.floats("\(Self.dir)/losses.f32"), refNorms = try Reference.floats("\(Self.dir)/grad_norms.f32")
        for step in 0..<3 {
            let loss = try plan.run([:], ids: ["input_ids": b.ids, "labels": b.labels])["loss"]!.scalars[0]
            XCTAssertEqual(loss, refLosses[step], accuracy: 1e-5 * refLosses[step], "loss before step \(step + 1)")
            let norm = Float(store.flatGradients.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
            XCTAssertEqual(norm, refNorms[step], accuracy: 1e-4 * refNorms[step], "gradient norm before step \(step + 1)")
        }
        // The manifest's hint: AdamW moves each element by about lr·sign(g), so an element whose
        // gradient is within float error of 0 may move the other way — compare the trained weights
        // within a few lr (measured: 1.35e-3 at worst) and their norms (tensor_stats.json), and the
        // loss after the last step within 1e-4.
        let final = try SafeTensorsFile(url: Reference.url("\(Self.dir)/adapter_final/adapter_model.safetensors"))
        let stats = try JSONValue.parse(Reference.bytes("\(Self.dir)/tensor_stats.json"), file: "tensor_stats.json", field: "$")
        for p in store.parameters {
            let ref = try final.tensor(pefKey(p)).scalars, got = p.tensor.scalars
            let worst = zip(got, ref).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 3e-3, "final \(p.name): max abs diff \(worst) (lr 1e-3)")
            let norm = got.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            guard let refNorm = stats["tensors"]?[pefKey(p)]?["final"]?["l2"]?.doubleValue else {
                return XCTFail("tensor_stats.json: tensors.\(pefKey(p)).final.l2")
            }
            XCTAssertEqual(norm, refNorm, accuracy: 1e-4 * refNorm, "final \(p.name): L2 norm")
        }
        let after = try plan.run([:], ids: ["input_ids": b.ids, "labels": b.labels])["loss"]!.scalars[0]
        let refAfter = Float(1.4143438339233398)  // manifest lora.loss_after_final_step
        XCTAssertEqual(after, refAfter, accuracy: 1e-4 * refAfter, "loss after the third step")
    }
}
