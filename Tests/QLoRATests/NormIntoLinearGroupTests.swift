import XCTest
@testable import QLoRA

/// RMSNorm into the linear groups (inference plans): the rms_norm in front of q/k/v, of gate/up
/// (+silu·mul) or of a lone on-the-fly linear becomes part of that step, and every output equals
/// the plan without this fusion (a separate rms_norm step) bit for bit — M = 1 and 5 (GEMV tiles)
/// and M = 70 (panel GEMM), 1 and 2 threads; the Llama interop model's prefill and KV-cache
/// decode logits likewise.
final class NormIntoLinearGroupTests: XCTestCase {
    static let k = 192

    /// 4-bit NF4 layers [n, k] (double quant, block 64) with rank-4 LoRA and biases where asked.
    static func layers(_ outs: [Int], lora: [Bool], bias: [Bool], seed: UInt64) throws -> [QuantizedLinear] {
        var rng = SeededRandom(seed: seed)
        var config = QLoraConfig()
        config.rank = 4
        config.alpha = 8
        return try outs.enumerated().map { i, n in
            let w = try QuantizedTensor.quantize(Tensor(shape: [n, k], scalars: rng.floats(n * k)), quantType: .nf4, blockSize: 64,
                                                 doubleQuant: true, name: "w\(i)")
            let b = bias[i] ? try Tensor(shape: [n], scalars: rng.floats(n)) : nil
            let layer = try QuantizedLinear(quantizedWeight: w, bias: b, config: config, name: "l\(i)", seed: UInt64(i), lora: lora[i])
            if lora[i] {
                try layer.setLoraWeights(a: Tensor(shape: [4, k], scalars: rng.floats(4 * k)), b: Tensor(shape: [n, 4], scalars: rng.floats(4 * n)))
            }
            return layer
        }
    }

    /// Options with every fusion, or without the norm fusion (the reference plan).
    func options(threads: Int, norm: Bool = true) -> CompileOptions {
        var o = CompileOptions(threads: threads)
        if !norm { o.fusionStages.remove(.normIntoLinearGroups) }
        return o
    }

    func steps(_ g: Graph, _ o: CompileOptions) throws -> [String] {
        try Compiler.optimize(g.snapshot, options: o).nodes.filter { !$0.op.isLeaf && !$0.op.definition.isAlias }.map(\.op.name)
    }

    func gamma(_ rng: inout SeededRandom, _ name: String) throws -> ParameterStorage {
        try ParameterStorage(name: name, tensor: Tensor(shape: [Self.k], scalars: rng.floats(Self.k).map { 1 + 0.5 * $0 }), trainable: false)
    }

    /// A pre-norm block: rms_norm → q/k/v (LoRA, biases on some), rms_norm → gate/up → silu·mul.
    func testNormMovesIntoTheGroupsWithTheSameBits() throws {
        let qkv = try Self.layers([42, 14, 14], lora: [true, false, true], bias: [false, true, true], seed: 11)
        let mlp = try Self.layers([42, 42], lora: [true, true], bias: [false, true], seed: 12)
        var rng = SeededRandom(seed: 13)
        let g1 = try gamma(&rng, "g1"), g2 = try gamma(&rng, "g2")
        for m in [1, 5, 70] {
            let g = Graph()
            let h = g.input("h", shape: [m, Self.k])
            let n = try g.rmsNorm(h, weight: g.parameter(g1), eps: 1e-5, label: "input_norm")
            for (i, l) in qkv.enumerated() { g.output("y\(i)", try l(n)) }
            let n2 = try g.rmsNorm(h, weight: g.parameter(g2), eps: 1e-6, label: "post_norm")
            g.output("act", try g.mul(try g.silu(try mlp[0](n2)), try mlp[1](n2)))
            XCTAssertEqual(try steps(g, options(threads: 1)), ["fused_qlora_linear_group", "fused_qlora_linear_group_silu_mul"])
            XCTAssertEqual(try steps(g, options(threads: 1, norm: false)),
                           ["rms_norm", "fused_qlora_linear_group", "rms_norm", "fused_qlora_linear_group_silu_mul"])
            let x = try Tensor(shape: [m, Self.k], scalars: rng.floats(m * Self.k).map { 3 * $0 })
            for threads in [1, 2] {
                let plan = try g.compile(options(threads: threads))
                XCTAssert(plan.summary.contains("fused_qlora_linear_group(rms_norm, on-the-fly, 3 weights)"), plan.summary)
                XCTAssert(plan.summary.contains("fused_qlora_linear_group(rms_norm, on-the-fly, 2 weights, silu_mul)"), plan.summary)
                let fused = try plan.run(["h": x])
                let ref = try g.compile(options(threads: threads, norm: false)).run(["h": x])
                for name in ["y0", "y1", "y2", "act"] {
                    XCTAssertEqual(fused[name]!.scalars, ref[name]!.scalars, "\(name), M = \(m), \(threads) threads")
                }
            }
        }
    }

    /// A lone on-the-fly linear takes its norm as a one-member group; a norm something else also
    /// reads stays a step.
    func testLoneLinearAndSharedNorm() throws {
        let l = try Self.layers([42], lora: [true], bias: [true], seed: 14)[0]
        var rng = SeededRandom(seed: 15)
        let g1 = try gamma(&rng, "g1")
        let g = Graph()
        let h = g.input("h", shape: [3, Self.k])
        g.output("y", try l(try g.rmsNorm(h, weight: g.parameter(g1))))
        XCTAssertEqual(try steps(g, options(threads: 1)), ["fused_qlora_linear_group"])
        let x = try Tensor(shape: [3, Self.k], scalars: rng.floats(3 * Self.k))
        for threads in [1, 2] {
            XCTAssertEqual(try g.compile(options(threads: threads)).run(["h": x])["y"]!.scalars,
                           try g.compile(options(threads: threads, norm: false)).run(["h": x])["y"]!.scalars, "\(threads) threads")
        }
        let shared = Graph()
        let hs = shared.input("h", shape: [3, Self.k])
        let n = try shared.rmsNorm(hs, weight: shared.parameter(g1))
        shared.output("y", try l(n))
        shared.output("n", n)
        XCTAssertEqual(try steps(shared, options(threads: 1)), ["rms_norm", "fused_qlora_linear"])
        // Cached weights keep their dense kernel and their norm step.
        var cached = options(threads: 1)
        cached.mode = .cached
        XCTAssertEqual(try steps(g, cached), ["rms_norm", "fused_qlora_linear"])
    }

    /// The Llama interop model (1 layer, GQA, MLP biases, LoRA on gate/up/down): prefill (M = 4
    /// and 70) and one-token decode steps through the KV cache give the logits of the plans
    /// without the norm fusion, bit for bit, and the plans hold no rms_norm but the final one.
    func testLlamaPrefillAndDecodeKeepTheirBits() throws {
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let (g, _) = try model.graph(batch: 1, seq: 5)
        let names = try steps(g, options(threads: 1))
        XCTAssertEqual(names.filter { $0 == "rms_norm" }.count, 1, "\(names)")
        XCTAssertEqual(names.filter { $0.hasPrefix("fused_qlora_linear_group") }.count, 2, "\(names)")
        var rng = SplitMix64(seed: 16)
        for threads in [1, 2] {
            for promptLength in [4, 70] {
                let prompt = (0..<promptLength).map { _ in Int32(rng.next() % 16) }
                let fused = try LlamaGenerator(model: model, capacity: 80, options: options(threads: threads))
                let ref = try LlamaGenerator(model: model, capacity: 80, options: options(threads: threads, norm: false))
                XCTAssertEqual(try fused.feed(prompt), try ref.feed(prompt), "prefill \(promptLength), \(threads) threads")
                for t: Int32 in [3, 9, 14] {
                    XCTAssertEqual(try fused.feed([t]), try ref.feed([t]), "decode after \(promptLength), \(threads) threads")
                }
            }
        }
    }
}
