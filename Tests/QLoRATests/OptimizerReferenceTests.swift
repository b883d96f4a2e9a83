import Foundation
import XCTest
@testable import QLoRA

/// One AdamW step (with global-norm clipping and weight decay) against torch: the causal-LM
/// manifest (shared/reference/interop/causal_lm) gives PEFT's gradients of the reference adapter
/// (grads_lora.safetensors) and, per training run, the adapter after step 1 and the gradient norm
/// before it. Applying our clipping + AdamW to those gradients must reproduce step 1 to ~2e-8.
final class OptimizerReferenceTests: XCTestCase {
    struct Run { var name: String; var lr: Double; var weightDecay: Double; var maxNorm: Double? }

    static func runs() throws -> [Run] {
        let manifest = try Reference.manifest("interop/causal_lm/manifest.json")
        let runs = (manifest["results"] as! [String: Any])["runs"] as! [String: Any]
        return runs.keys.sorted().map { name in
            let r = runs[name] as! [String: Any], o = r["optimizer"] as! [String: Any]
            XCTAssertEqual(o["betas"] as? [Double], [0.9, 0.999])
            XCTAssertEqual(o["eps"] as? Double, 1e-8)
            return Run(name: name, lr: o["lr"] as! Double, weightDecay: o["weight_decay"] as! Double,
                       maxNorm: r["clip_grad_norm_max_norm"] as? Double)
        }
    }

    /// The adapter's tensors as trainable parameters in PEFT's named_parameters order, gradients set.
    static func store() throws -> (ParameterStore, keys: [String]) {
        let manifest = try Reference.manifest("interop/causal_lm/manifest.json")
        let order = ((manifest["lora"] as! [String: Any])["trainable_parameters_in_order"] as! [[String: Any]]).map { $0["key"] as! String }
        let adapter = try SafeTensorsFile(url: Reference.url("interop/adapter/adapter_model.safetensors"))
        let grads = try SafeTensorsFile(url: Reference.url("interop/causal_lm/grads_lora.safetensors"))
        let params = try order.map { try ParameterStorage(name: $0, tensor: adapter.tensor($0), trainable: true) }
        let store = try ParameterStore(gathering: params)
        for (i, key) in order.enumerated() { try store.setGradient(i, grads.tensor(key)) }
        return (store, order)
    }

    func testOneClippedAdamWStepReproducesTorchForEveryRun() throws {
        let runs = try Self.runs()
        XCTAssertEqual(runs.map(\.name), ["adamw", "adamw_wd_clip", "adamw_wd_clip_tight"])
        for run in runs {
            let (store, keys) = try Self.store()
            let norm = GradientNorm.total(store)
            let torchNorm = try Reference.floats("interop/causal_lm/\(run.name).grad_norms.f32")[0]
            XCTAssertEqual(norm, torchNorm, accuracy: torchNorm * 2e-7, "\(run.name): global gradient norm")
            let coef = run.maxNorm.map { GradientNorm.clipCoefficient(total: norm, maxNorm: $0) } ?? 1
            if run.name == "adamw_wd_clip_tight" { XCTAssertLessThan(coef, 0.5, "the tight run clips") }
            let optimizer = try Optimizer(.adamW(learningRate: run.lr, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: run.weightDecay),
                                          parameters: store)
            optimizer.step(gradientScale: coef, threads: 1)
            let expected = try SafeTensorsFile(url: Reference.url("interop/causal_lm/\(run.name).step1.safetensors"))
            var worst: Float = 0
            for (i, key) in keys.enumerated() {
                let got = store.parameters[i].tensor.scalars, want = try expected.tensor(key).scalars
                for (a, b) in zip(got, want) { worst = max(worst, abs(a - b)) }
            }
            XCTAssertLessThanOrEqual(worst, 2e-8, "\(run.name): step 1 vs torch, max abs difference \(worst)")
            XCTAssertEqual(optimizer.stepCount, 1)
        }
    }

    /// Clipping caps the norm: after scaling by the coefficient the norm is max_norm (up to the
    /// 1e-6 torch adds), and a coefficient of 1 leaves the gradients' bits alone.
    func testClippingCapsTheNorm() throws {
        let (store, _) = try Self.store()
        let before = GradientNorm.total(store)
        let coef = GradientNorm.clipCoefficient(total: before, maxNorm: 0.05)
        let clipped = (0..<store.parameters.count).map { store.gradient($0).scalars.map { $0 * coef } }
        for (i, g) in clipped.enumerated() { try store.setGradient(i, Tensor(shape: store.gradients[i].shape, scalars: g)) }
        XCTAssertEqual(GradientNorm.total(store), 0.05, accuracy: 1e-6)
        XCTAssertEqual(GradientNorm.clipCoefficient(total: before, maxNorm: 10), 1)
    }
}
