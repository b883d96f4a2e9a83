import Foundation
import XCTest
@testable import QLoRA

/// The whole Llama model against transformers + PEFT (../shared/reference/interop/causal_lm: a
/// 1-layer Llama, hidden 64, 4 heads / 2 KV heads, MLP biases, separate lm_head, rank-8 adapter on
/// gate/up/down): logits, hidden states, loss, every LoRA gradient and a 5-step AdamW run.
final class LlamaReferenceTests: XCTestCase {
    static let dir = "interop/causal_lm"

    func inputIds() throws -> IntTensor { try Self.inputIds() }

    /// input_ids.i64 [2, 7] as int32.
    static func inputIds() throws -> IntTensor {
        let d = try Reference.data("\(Self.dir)/input_ids.i64")
        let ids = d.withUnsafeBytes { raw in (0..<(d.count / 8)).map { Int32(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) } }
        return try IntTensor(shape: [2, 7], scalars: ids)
    }

    func model(adapter: Bool) throws -> LlamaModel {
        try LlamaModel.load(Reference.url("interop/model_bnb4bit"),
                            adapter: adapter ? LoraAdapter(directory: Reference.url("interop/adapter")) : nil)
    }

    func testConfigFromTransformers5ConfigJSON() throws {
        let c = try LlamaConfig.load(configJSON: Reference.url("interop/model_bnb4bit/config.json"))
        XCTAssertEqual([c.hiddenSize, c.intermediateSize, c.layers, c.heads, c.kvHeads, c.headDim, c.vocabSize], [64, 128, 1, 4, 2, 16, 16])
        XCTAssertEqual(c.ropeTheta, 10000)
        XCTAssertEqual(c.rmsNormEps, 1e-6)
        XCTAssertEqual(c.ropeScaling, .none)
        XCTAssertFalse(c.tieWordEmbeddings)
        XCTAssertFalse(c.attentionBias)
        XCTAssertTrue(c.mlpBias)
        XCTAssertEqual(c.bosTokenId, 1)
        XCTAssertEqual(c.eosTokenIds, [2])
    }

    func testUnsupportedConfigFieldsAreNamed() throws {
        func parse(_ text: String) throws -> LlamaConfig { try LlamaConfig.parse(JSONValue.parse(Array(text.utf8), file: "c.json", field: "$"), source: "c.json") }
        let base = #""hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 16"#
        XCTAssertEqual(try parse("{\(base)}").kvHeads, 4)
        for (extra, fragment) in [(#""architectures": ["MistralForCausalLM"]"#, "architectures"), (#""hidden_act": "gelu""#, "hidden_act"),
                                  (#""rope_scaling": {"rope_type": "yarn", "factor": 2.0}"#, "rope_scaling.rope_type 'yarn'"),
                                  (#""num_key_value_heads": 3"#, "num_key_value_heads"), (#""pretraining_tp": 2"#, "pretraining_tp"),
                                  (#""rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}"#, "rope_parameters.factor")] {
            XCTAssertThrowsError(try parse("{\(base), \(extra)}"), extra) { e in XCTAssert("\(e)".contains(fragment), "\(e)") }
        }
        let llama3 = try parse(#"{"# + base + #", "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "rope_theta": 500000.0}"#)
        XCTAssertEqual(llama3.ropeScaling, .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        XCTAssertEqual(llama3.ropeTheta, 500000)
    }

    func testLogitsHiddenStatesAndNormMatchTransformers() throws {
        let ids = try inputIds()
        for adapter in [false, true] {
            let m = try model(adapter: adapter)
            XCTAssertEqual(m.loraLayers.count, adapter ? 3 : 0)
            let (g, out) = try m.graph(batch: 2, seq: 7)
            g.output("hidden", out.hiddenStates[0])
            g.output("norm", out.finalNorm)
            let r = try g.compile().run([:], ids: ["input_ids": ids])
            let tag = adapter ? "lora" : "base"
            assertClose(r["logits"]!.scalars, try Reference.floats("\(Self.dir)/logits_\(tag).f32"), relative: 1e-5, "logits_\(tag)")
            assertClose(r["hidden"]!.scalars, try Reference.floats("\(Self.dir)/hidden_\(tag).f32"), relative: 1e-5, "hidden_\(tag)")
            if adapter { assertClose(r["norm"]!.scalars, try Reference.floats("\(Self.dir)/final_norm_lora.f32"), relative: 1e-5, "final_norm_lora") }
        }
    }

    /// One plan: forward, causal-LM loss, backward into the adapter's A/B gradients.
    func trainingGraph(_ m: LlamaModel, optimizer: Optimizer? = nil, store: ParameterStore) throws -> ExecutablePlan {
        let g = Graph()
        let ids = g.input("input_ids", shape: [2, 7], element: .int32)
        let loss = try g.causalLMLoss(try m.record(inputIds: ids).logits, labels: ids, label: "loss")
        g.output("loss", loss)
        if let optimizer { try g.backward(from: loss, optimizer: optimizer) } else { try g.backward(from: loss, parameters: store) }
        return try g.compile()
    }

    func pefKey(_ p: ParameterStorage) -> String { "base_model.model.\(p.name).weight" }

    func testLossAndLoraGradientsMatchPEFT() throws {
        let ids = try inputIds()
        let base = try model(adapter: false)
        let g = Graph()
        let idv = g.input("input_ids", shape: [2, 7], element: .int32)
        g.output("loss", try g.causalLMLoss(try base.record(inputIds: idv).logits, labels: idv))
        let baseLoss = try g.compile().run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
        let refBase = try Reference.floats("\(Self.dir)/loss_base.f32")[0]
        XCTAssertEqual(baseLoss, refBase, accuracy: 1e-6 * refBase)

        let m = try model(adapter: true)
        let store = try ParameterStore(gathering: m.trainableParameters)
        XCTAssertEqual(store.count, 4608)
        let loss = try trainingGraph(m, store: store).run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
        let refLoss = try Reference.floats("\(Self.dir)/loss_lora.f32")[0]
        XCTAssertEqual(loss, refLoss, accuracy: 1e-6 * refLoss)
        let grads = try SafeTensorsFile(url: Reference.url("\(Self.dir)/grads_lora.safetensors"))
        XCTAssertEqual(grads.names.count, store.parameters.count)
        for (p, grad) in zip(store.parameters, store.gradients) {
            assertClose(grad.tensor.scalars, try grads.tensor(pefKey(p)).scalars, relative: 1e-4, "gradient of \(p.name)")
        }
    }

    /// torch.optim.AdamW (lr 1e-2, no weight decay, no clipping), 5 steps on the same batch:
    /// losses within 1e-5 relative, pre-step gradient norms, and the final adapter within 1e-4.
    func testFiveAdamWStepsMatchPEFT() throws {
        let ids = try inputIds()
        let m = try model(adapter: true)
        let store = try ParameterStore(gathering: m.trainableParameters)
        let optimizer = try Optimizer(.adamW(learningRate: 0.01, weightDecay: 0), parameters: store)
        let plan = try trainingGraph(m, optimizer: optimizer, store: store)
        let refLosses = try Reference.floats("\(Self.dir)/adamw.losses.f32"), refNorms = try Reference.floats("\(Self.dir)/adamw.grad_norms.f32")
        for step in 0..<5 {
            let loss = try plan.run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
            XCTAssertEqual(loss, refLosses[step], accuracy: 1e-5 * refLosses[step], "loss before step \(step + 1)")
            let norm = Float(store.flatGradients.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot())
            XCTAssertEqual(norm, refNorms[step], accuracy: 1e-5 * refNorms[step], "gradient norm before step \(step + 1)")
        }
        let final = try SafeTensorsFile(url: Reference.url("\(Self.dir)/adamw.final.safetensors"))
        for p in store.parameters {
            let ref = try final.tensor(pefKey(p)).scalars, got = p.tensor.scalars
            let worst = zip(got, ref).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-4, "final \(p.name): max abs diff \(worst)")
        }
        // The trained adapter written back in PEFT form loads into a model giving the reference's final loss.
        let after = try Reference.floats("\(Self.dir)/adamw.loss_after_final_step.f32")[0]
        let g = Graph()
        let idv = g.input("input_ids", shape: [2, 7], element: .int32)
        g.output("loss", try g.causalLMLoss(try m.record(inputIds: idv).logits, labels: idv))
        let loss = try g.compile().run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
        XCTAssertEqual(loss, after, accuracy: 1e-5 * after)
    }
}
