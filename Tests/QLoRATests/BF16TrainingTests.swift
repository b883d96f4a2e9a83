import Foundation
import XCTest
import CQLoRAKernels
@testable import QLoRA

/// Training plans compiled with `computeType: .bfloat16` (docs/bf16-training.md) on the interop
/// Llama (../shared/reference/interop/causal_lm, transformers + PEFT in f32): which steps run in
/// bf16, loss and LoRA gradients against the f32 plan and the PEFT reference, 1 vs 2 threads
/// bitwise, a 5-step AdamW run, and the f32 fallback under an ISA cap (every CPU).
final class BF16TrainingTests: XCTestCase {
    static let dir = "interop/causal_lm"

    /// Measured on an AVX512-BF16 CPU (Zen 4; the forward's fused linears also round x and W to
    /// bf16): one step [2, 7]: loss |bf16 − PEFT| / PEFT = 7.6e-5, worst LoRA gradient
    /// max|bf16 − PEFT| / max|PEFT| = 9.6e-3 (up_proj.lora_A; the same against the f32 plan);
    /// [2, 32] against f32: 1.0e-2; 5 AdamW steps: losses within 5.0e-4 of PEFT's. Tolerances a
    /// bit above those.
    static let lossTolerance: Float = 2e-4
    static let gradientTolerance: Float = 1.5e-2
    static let adamLossTolerance: Float = 1e-3

    func model() throws -> LlamaModel {
        try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
    }

    func plan(_ m: LlamaModel, shape: [Int], options: CompileOptions, optimizer: Optimizer? = nil, store: ParameterStore) throws -> ExecutablePlan {
        let g = Graph()
        let ids = g.input("input_ids", shape: shape, element: .int32)
        let loss = try g.causalLMLoss(try m.record(inputIds: ids).logits, labels: ids, label: "loss")
        g.output("loss", loss)
        if let optimizer { try g.backward(from: loss, optimizer: optimizer) } else { try g.backward(from: loss, parameters: store) }
        return try g.compile(options)
    }

    /// Loss and every LoRA gradient of one step.
    func step(shape: [Int], ids: IntTensor, computeType: ComputeType, threads: Int = 2) throws -> (loss: Float, grads: [[Float]], plan: ExecutablePlan) {
        let m = try model()
        let store = try ParameterStore(gathering: m.trainableParameters)
        let p = try plan(m, shape: shape, options: CompileOptions(threads: threads, computeType: computeType), store: store)
        let loss = try p.run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
        return (loss, store.gradients.map { $0.tensor.scalars }, p)
    }

    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max()! / max(b.map { abs($0) }.max()!, 1e-30)
    }

    /// [2, 32] ids (64 rows: the lm_head forward takes its bf16 panel path from 64 rows on).
    static func longIds() throws -> IntTensor {
        var rng = SeededRandom(seed: 31)
        return try IntTensor(shape: [2, 32], scalars: (0..<64).map { _ in Int32(rng.next() % 16) })
    }

    func testBF16StepsAreChosenOnlyForTheFrozenBase() throws {
        let m = try model()
        let store = try ParameterStore(gathering: m.trainableParameters)
        let p = try plan(m, shape: [2, 32], options: CompileOptions(threads: 2, computeType: .bfloat16), store: store)
        let names = p.steps.map { "\($0.label): \($0.kernelName)" }
        let text = names.joined(separator: "\n")
        // Forward: every fused 4-bit linear (x·Aᵀ hand-off and groups included) and the lm_head.
        for s in p.steps where s.kernelName.hasPrefix("fused_qlora_linear") { XCTAssert(s.kernelName.contains("bf16"), "\(s.label): \(s.kernelName)") }
        XCTAssert(text.contains("(x·Aᵀ given)"), text)
        XCTAssert(names.contains { $0.hasPrefix("lm_head:") && $0.hasSuffix("matmul(sgemm, bf16)") }, text)
        // Backward: dX through every 4-bit weight and the lm_head; LoRA's matmuls stay f32.
        let nn = p.steps.filter { $0.kernelName.hasPrefix("matmul_nn") }
        // (The adapter is on gate/up/down of the one layer: dX runs through down_proj only.)
        let q4 = nn.filter { $0.kernelName.hasPrefix("matmul_nn(4-bit") }
        XCTAssertFalse(q4.isEmpty, text)
        for s in q4 { XCTAssertEqual(s.kernelName, "matmul_nn(4-bit on-the-fly)(bf16)", s.label) }
        XCTAssertEqual(nn.filter { $0.kernelName == "matmul_nn(bf16)" }.map(\.label), ["grad.lm_head.x"], text)
        XCTAssertFalse(p.steps.contains { $0.kernelName.hasPrefix("matmul_tn") && $0.kernelName.contains("bf16") })
        // An f32 plan has none.
        let f32 = try plan(m, shape: [2, 32], options: CompileOptions(threads: 2), store: store)
        XCTAssertFalse(f32.steps.contains { $0.kernelName.contains("bf16") })
    }

    func testStepMatchesF32AndPEFT() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16: a bf16 plan runs f32 (testF32FallbackIsTheF32Plan)") }
        let ids = try LlamaReferenceTests.inputIds()
        let bf = try step(shape: [2, 7], ids: ids, computeType: .bfloat16), f32 = try step(shape: [2, 7], ids: ids, computeType: .float32)
        let refLoss = try Reference.floats("\(Self.dir)/loss_lora.f32")[0]
        let refGrads = try SafeTensorsFile(url: Reference.url("\(Self.dir)/grads_lora.safetensors"))
        let names = try model().trainableParameters.map { "base_model.model.\($0.name).weight" }
        print(String(format: "bf16 step: loss %.7f, f32 %.7f, PEFT %.7f (|bf16-PEFT|/PEFT %.2e)", bf.loss, f32.loss, refLoss, abs(bf.loss - refLoss) / refLoss))
        XCTAssertEqual(bf.loss, refLoss, accuracy: Self.lossTolerance * refLoss)
        XCTAssertEqual(bf.loss, f32.loss, accuracy: Self.lossTolerance * f32.loss)
        var worst: Float = 0
        for (i, name) in names.enumerated() {
            let ref = try refGrads.tensor(name).scalars
            let e = Self.relativeError(bf.grads[i], ref)
            worst = max(worst, e)
            XCTAssertLessThanOrEqual(e, Self.gradientTolerance, "\(name) vs PEFT")
            XCTAssertLessThanOrEqual(Self.relativeError(bf.grads[i], f32.grads[i]), Self.gradientTolerance, "\(name) vs f32")
        }
        print(String(format: "bf16 step: worst gradient max|bf16-PEFT|/max|PEFT| = %.2e", worst))
        XCTAssertNotEqual(bf.grads, f32.grads, "the bf16 kernels ran (the gradients differ from f32 in some bits)")
    }

    /// 64 rows: also the lm_head's bf16 forward (panel path); against the f32 plan (the f32 plan
    /// matches PEFT: LlamaReferenceTests), 1 vs 2 threads bitwise.
    func testLongerStepAndThreadCounts() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16") }
        let ids = try Self.longIds()
        let bf2 = try step(shape: [2, 32], ids: ids, computeType: .bfloat16, threads: 2)
        let bf1 = try step(shape: [2, 32], ids: ids, computeType: .bfloat16, threads: 1)
        let f32 = try step(shape: [2, 32], ids: ids, computeType: .float32)
        XCTAssertEqual(bf2.loss.bitPattern, bf1.loss.bitPattern, "loss, 2 vs 1 threads")
        for (a, b) in zip(bf2.grads, bf1.grads) { assertBitIdentical(a, b, "gradient, 2 vs 1 threads") }
        XCTAssertEqual(bf2.loss, f32.loss, accuracy: Self.lossTolerance * f32.loss)
        var worst: Float = 0
        for (a, b) in zip(bf2.grads, f32.grads) { worst = max(worst, Self.relativeError(a, b)) }
        print(String(format: "bf16 step [2, 32]: loss %.7f vs f32 %.7f; worst gradient error vs f32 %.2e", bf2.loss, f32.loss, worst))
        XCTAssertLessThanOrEqual(worst, Self.gradientTolerance)
    }

    /// torch AdamW lr 1e-2 (the reference's `adamw` run), 5 steps: the bf16 losses follow the f32
    /// ones (each within adamLossTolerance of PEFT's) and decrease the same way.
    func testFiveAdamWStepsDecreaseLikeF32() throws {
        guard cq_bf16_available() != 0 else { throw XCTSkip("CPU without AVX512-BF16") }
        let ids = try LlamaReferenceTests.inputIds()
        let refLosses = try Reference.floats("\(Self.dir)/adamw.losses.f32")
        var runs: [[Float]] = []
        for type in [ComputeType.bfloat16, .float32] {
            let m = try model()
            let store = try ParameterStore(gathering: m.trainableParameters)
            let optimizer = try Optimizer(.adamW(learningRate: 0.01, weightDecay: 0), parameters: store)
            let p = try plan(m, shape: [2, 7], options: CompileOptions(threads: 2, computeType: type), optimizer: optimizer, store: store)
            runs.append(try (0..<5).map { _ in try p.run([:], ids: ["input_ids": ids])["loss"]!.scalars[0] })
        }
        let (bf, f32) = (runs[0], runs[1])
        print("bf16 AdamW losses \(bf); f32 \(f32); PEFT \(refLosses)")
        for i in 0..<5 {
            XCTAssertEqual(bf[i], refLosses[i], accuracy: Self.adamLossTolerance * refLosses[i], "bf16 loss \(i + 1) vs PEFT")
            if i > 0 { XCTAssertLessThan(bf[i], bf[i - 1], "bf16 loss decreases at step \(i + 1)") }
        }
        let drop = { (l: [Float]) in l[0] - l[4] }
        XCTAssertEqual(drop(bf), drop(f32), accuracy: 0.02 * drop(f32), "total decrease over 5 steps")
    }

    /// Every CPU: with the ISA capped at AVX2 (QLORA_ISA=avx2) a bf16 plan computes exactly the f32 plan.
    func testF32FallbackIsTheF32Plan() throws {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        _ = cq_set_isa(CQ_ISA_AVX2)
        let ids = try Self.longIds()
        let bf = try step(shape: [2, 32], ids: ids, computeType: .bfloat16), f32 = try step(shape: [2, 32], ids: ids, computeType: .float32)
        XCTAssertEqual(bf.loss.bitPattern, f32.loss.bitPattern)
        for (a, b) in zip(bf.grads, f32.grads) { assertBitIdentical(a, b, "gradient, bf16 plan capped at avx2 vs f32 plan") }
    }
}
