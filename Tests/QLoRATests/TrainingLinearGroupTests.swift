import XCTest
@testable import QLoRA

/// Linear groups in training plans: q/k/v and gate/up (x·Aᵀ handed in by `lora_down`) run as
/// one step each, gate/up with the SiLU·mul epilogue keeping gate and up for the backward, whose
/// SwiGLU gradient is one `silu_mul_grad` step; the gradient sums run as add chains. Losses, every LoRA gradient and the adapter after
/// AdamW steps equal the plan without these fusions (today's ungrouped training plan) bit for bit,
/// 1 and 2 threads, with and without gradient checkpointing.
final class TrainingLinearGroupTests: XCTestCase {
    func options(threads: Int, grouped: Bool, checkpointing: Bool = false) -> CompileOptions {
        var o = CompileOptions(threads: threads, gradientCheckpointing: checkpointing)
        if !grouped { o.fusionStages = [] }
        return o
    }

    func steps(_ g: Graph, _ o: CompileOptions) throws -> [String] {
        try Compiler.optimize(g.snapshot, options: o).nodes.filter { !$0.op.isLeaf && !$0.op.definition.isAlias }.map(\.op.name)
    }

    /// silu_mul's gradient in one step: da, db equal the separate mul / silu_grad / silu / mul steps.
    func testSiluMulGradientIsOneStepWithTheSameBits() throws {
        var rng = SeededRandom(seed: 21)
        let n = 40_000   // above the elementwise kernels' one-thread cutoff
        let feeds = ["a": try Tensor(shape: [n], scalars: rng.floats(n, scale: 6)), "b": try Tensor(shape: [n], scalars: rng.floats(n)),
                     "t": try Tensor(shape: [n], scalars: rng.floats(n))]
        let g = Graph()
        let a = g.input("a", shape: [n]), b = g.input("b", shape: [n])
        let loss = try g.mseLoss(try g.mul(try g.silu(a), b), target: g.input("t", shape: [n]))
        g.output("loss", loss)
        try g.backward(from: loss, inputGradients: ["da": a, "db": b])
        let fused = try steps(g, options(threads: 1, grouped: true))
        XCTAssert(fused.contains("silu_mul_grad") && fused.contains("silu_mul") && !fused.contains("silu"), "\(fused)")
        XCTAssertFalse(try steps(g, options(threads: 1, grouped: false)).contains("silu_mul_grad"))
        for threads in [1, 2] {
            let got = try g.compile(options(threads: threads, grouped: true)).run(feeds)
            let ref = try g.compile(options(threads: threads, grouped: false)).run(feeds)
            for name in ["loss", "da", "db"] { XCTAssertEqual(got[name]!.scalars, ref[name]!.scalars, "\(name), \(threads) threads") }
        }
    }

    /// The Llama interop model with fresh rank-8 LoRA on all 7 projections, 3 AdamW steps on
    /// [2, seq] tokens (B starts at zero, so later steps exercise every product): seq 7 is 14 rows
    /// (the groups' GEMV tiles), seq 40 is 80 rows (the panel GEMMs, members in turn).
    func train(threads: Int, grouped: Bool, checkpointing: Bool = false, seq: Int = 7) throws
        -> (losses: [Float], grads: [Float], adapter: [Float], steps: [String]) {
        var fresh = QLoraConfig()
        fresh.rank = 8
        fresh.alpha = 16
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"),
                                        loraTargets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                        freshLora: fresh, seed: 5)
        let store = try ParameterStore(gathering: model.trainableParameters)
        let optimizer = try Optimizer(.adamW(learningRate: 0.01, weightDecay: 0), parameters: store)
        let g = Graph()
        let ids = g.input("input_ids", shape: [2, seq], element: .int32)
        let loss = try g.causalLMLoss(try model.record(inputIds: ids).logits, labels: ids, label: "loss")
        g.output("loss", loss)
        try g.backward(from: loss, optimizer: optimizer)
        let o = options(threads: threads, grouped: grouped, checkpointing: checkpointing)
        let plan = try g.compile(o)
        var rng = SeededRandom(seed: 23)
        let input = seq == 7 ? try LlamaReferenceTests.inputIds() : try IntTensor(shape: [2, seq], scalars: (0..<(2 * seq)).map { _ in Int32(rng.next() % 16) })
        var losses: [Float] = [], grads: [Float] = []
        for _ in 0..<3 {
            losses.append(try plan.run([:], ids: ["input_ids": input])["loss"]!.scalars[0])
            grads += store.flatGradients
        }
        return (losses, grads, store.flatValues, try steps(g, o))
    }

    func testGroupedTrainingStepsKeepTheirBits() throws {
        for checkpointing in [false, true] {
            for threads in [1, 2] {
                let got = try train(threads: threads, grouped: true, checkpointing: checkpointing)
                let ref = try train(threads: threads, grouped: false, checkpointing: checkpointing)
                let tag = "\(threads) threads\(checkpointing ? ", checkpointing" : "")"
                XCTAssertEqual(got.losses, ref.losses, tag)
                XCTAssertEqual(got.grads, ref.grads, tag)
                XCTAssertEqual(got.adapter, ref.adapter, tag)
                XCTAssertNotEqual(got.adapter.filter { $0 != 0 }.count, 0)
                if threads == 1 && !checkpointing {
                    let count = { (s: [String], name: String) in s.filter { $0 == name }.count }
                    XCTAssertEqual(count(got.steps, "fused_qlora_linear_group"), 1, "\(got.steps)")          // q/k/v
                    XCTAssertEqual(count(got.steps, "fused_qlora_linear_group_silu_mul"), 1, "\(got.steps)") // gate/up
                    XCTAssertEqual(count(got.steps, "fused_qlora_linear"), 2, "\(got.steps)")                // o, down
                    XCTAssertEqual(count(got.steps, "silu_mul_grad"), 1, "\(got.steps)")
                    XCTAssertEqual(count(got.steps, "silu") + count(got.steps, "silu_grad"), 0, "\(got.steps)")
                    XCTAssertEqual(count(ref.steps, "fused_qlora_linear"), 7, "\(ref.steps)")
                    XCTAssertEqual(count(got.steps, "lora_down"), 7, "\(got.steps)")
                    // gate/up's four dX contributions as one add chain (q/k/v's dX is not needed:
                    // the layer reads the frozen embedding).
                    XCTAssertEqual(count(got.steps, "add_chain"), 1, "\(got.steps)")
                    XCTAssertLessThan(count(got.steps, "add") + count(got.steps, "add_chain"), count(ref.steps, "add"), "\(got.steps)")
                }
            }
        }
    }

    /// 80 rows: the groups run the members' panel GEMMs with x·Aᵀ given.
    func testGroupedPanelPathKeepsItsBits() throws {
        for threads in [1, 2] {
            let got = try train(threads: threads, grouped: true, seq: 40), ref = try train(threads: threads, grouped: false, seq: 40)
            XCTAssertEqual(got.losses, ref.losses, "\(threads) threads")
            XCTAssertEqual(got.grads, ref.grads, "\(threads) threads")
            XCTAssertEqual(got.adapter, ref.adapter, "\(threads) threads")
            XCTAssert(got.steps.contains("fused_qlora_linear_group_silu_mul"), "\(got.steps)")
        }
    }
}
