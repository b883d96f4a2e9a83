import XCTest
@testable import QLoRA

/// The linear-group fusion (q/k/v; gate/up with the SiLU·mul epilogue): the optimized IR holds one
/// group step, and every output equals the same layer compiled alone (and, for the epilogue, the
/// silu_mul step applied to those) bit for bit — M = 1 and 5 (GEMV tiles of all members in one
/// parallel region) and M = 70 (the panel GEMM, members in turn), 1 and 2 threads. Partial
/// 4-row tiles (42 and 14 rows), LoRA and bias on some members, double-quantized NF4 weights.
final class LinearGroupFusionTests: XCTestCase {
    static let k = 192

    func layers(_ outs: [Int], lora: [Bool], bias: [Bool], seed: UInt64) throws -> [QuantizedLinear] {
        var rng = SeededRandom(seed: seed)
        var config = QLoraConfig()
        config.rank = 4
        config.alpha = 8
        return try outs.enumerated().map { i, n in
            let w = try QuantizedTensor.quantize(Tensor(shape: [n, Self.k], scalars: rng.floats(n * Self.k)), quantType: .nf4, blockSize: 64,
                                                 doubleQuant: true, name: "w\(i)")
            let b = bias[i] ? try Tensor(shape: [n], scalars: rng.floats(n)) : nil
            let layer = try QuantizedLinear(quantizedWeight: w, bias: b, config: config, name: "l\(i)", seed: UInt64(i), lora: lora[i])
            if lora[i] {
                try layer.setLoraWeights(a: Tensor(shape: [4, Self.k], scalars: rng.floats(4 * Self.k)),
                                         b: Tensor(shape: [n, 4], scalars: rng.floats(4 * n)))
            }
            return layer
        }
    }

    /// The computing ops of the optimized IR (no leaves, no result aliases).
    func steps(_ g: Graph, threads: Int = 1, options: CompileOptions? = nil) throws -> [String] {
        try Compiler.optimize(g.snapshot, options: options ?? CompileOptions(threads: threads)).nodes
            .filter { !$0.op.isLeaf && !$0.op.definition.isAlias }.map(\.op.name)
    }

    /// `layer` alone on x.
    func alone(_ layer: QuantizedLinear, _ x: Tensor, threads: Int) throws -> [Float] {
        let g = Graph()
        g.output("y", try layer(g.input("x", shape: x.shape)))
        XCTAssertEqual(try steps(g), ["fused_qlora_linear"])
        return try g.compile(CompileOptions(threads: threads)).run(["x": x])["y"]!.scalars
    }

    func testSiblingLinearsOfOneInputRunAsOneStepWithTheSameBits() throws {
        let ls = try layers([42, 14, 14], lora: [true, false, true], bias: [false, true, true], seed: 3)
        var rng = SeededRandom(seed: 4)
        for m in [1, 5, 70] {
            let x = try Tensor(shape: [m, Self.k], scalars: rng.floats(m * Self.k))
            let g = Graph()
            let xv = g.input("x", shape: [m, Self.k])
            for (i, l) in ls.enumerated() { g.output("y\(i)", try l(xv)) }
            XCTAssertEqual(try steps(g), ["fused_qlora_linear_group"])
            for threads in [1, 2] {
                let plan = try g.compile(CompileOptions(threads: threads))
                XCTAssert(plan.summary.contains("fused_qlora_linear_group(on-the-fly, 3 weights)"), plan.summary)
                let out = try plan.run(["x": x])
                for (i, l) in ls.enumerated() {
                    XCTAssertEqual(out["y\(i)"]!.scalars, try alone(l, x, threads: threads), "member \(i), M = \(m), \(threads) threads")
                }
            }
        }
    }

    func testGateAndUpTakeTheSiluMulEpilogueWithTheSameBits() throws {
        let ls = try layers([42, 42], lora: [true, false], bias: [false, true], seed: 5)
        var rng = SeededRandom(seed: 6)
        for m in [1, 5, 70] {
            let x = try Tensor(shape: [m, Self.k], scalars: rng.floats(m * Self.k))
            let g = Graph()
            let xv = g.input("x", shape: [m, Self.k])
            g.output("h", try g.mul(try g.silu(try ls[0](xv)), try ls[1](xv)))
            XCTAssertEqual(try steps(g), ["fused_qlora_linear_group_silu_mul"])
            // The reference: each layer alone, then the silu_mul step on their outputs.
            let s = Graph()
            let a = s.input("a", shape: [m, 42]), b = s.input("b", shape: [m, 42])
            s.output("h", try s.mul(try s.silu(a), b))
            XCTAssertEqual(try steps(s), ["silu_mul"])
            for threads in [1, 2] {
                let h = try g.compile(CompileOptions(threads: threads)).run(["x": x])["h"]!.scalars
                let gate = try Tensor(shape: [m, 42], scalars: alone(ls[0], x, threads: threads))
                let up = try Tensor(shape: [m, 42], scalars: alone(ls[1], x, threads: threads))
                let ref = try s.compile(CompileOptions(threads: threads)).run(["a": gate, "b": up])["h"]!.scalars
                XCTAssertEqual(h, ref, "M = \(m), \(threads) threads")
            }
        }
    }

    /// A gate output something else reads is kept: the group's results are gate, up and the
    /// silu·mul product (the training form, whose backward reads gate and up), each equal to the
    /// ungrouped plan's value bit for bit.
    func testAGateReadElsewhereIsKeptByTheGroup() throws {
        let ls = try layers([42, 42], lora: [false, true], bias: [false, false], seed: 7)
        let g = Graph()
        let xv = g.input("x", shape: [3, Self.k])
        let gate = try ls[0](xv)
        g.output("h", try g.mul(try g.silu(gate), try ls[1](xv)))
        g.output("gate", gate)
        XCTAssertEqual(try steps(g), ["fused_qlora_linear_group_silu_mul"])
        var rng = SeededRandom(seed: 8)
        let x = try Tensor(shape: [3, Self.k], scalars: rng.floats(3 * Self.k))
        for threads in [1, 2] {
            let plan = try g.compile(CompileOptions(threads: threads))
            XCTAssert(plan.summary.contains("fused_qlora_linear_group(on-the-fly, 2 weights, silu_mul, keeps gate/up)"), plan.summary)
            let out = try plan.run(["x": x])
            XCTAssertEqual(out["gate"]!.scalars, try alone(ls[0], x, threads: threads))
            var ungrouped = CompileOptions(threads: threads)
            ungrouped.fusionStages.remove(.linearGroups)
            XCTAssertEqual(try steps(g, options: ungrouped), ["fused_qlora_linear", "fused_qlora_linear", "silu_mul"])
            XCTAssertEqual(out["h"]!.scalars, try g.compile(ungrouped).run(["x": x])["h"]!.scalars, "\(threads) threads")
        }
    }

    /// Cached mode (f32 weights after mode lowering) and bf16 compute keep their own kernels:
    /// cached linears are not grouped; bf16 groups run the members in turn with the bf16 kernels.
    func testCachedWeightsAreNotGroupedAndBF16KeepsItsBits() throws {
        let ls = try layers([42, 14], lora: [false, false], bias: [false, false], seed: 9)
        let g = Graph()
        let xv = g.input("x", shape: [2, Self.k])
        for (i, l) in ls.enumerated() { g.output("y\(i)", try l(xv)) }
        let cached = try Compiler.optimize(g.snapshot, options: CompileOptions(mode: .cached, threads: 1)).nodes
            .filter { !$0.op.isLeaf && !$0.op.definition.isAlias }.map(\.op.name)
        XCTAssertEqual(cached, ["fused_qlora_linear", "fused_qlora_linear"])
        var rng = SeededRandom(seed: 10)
        let x = try Tensor(shape: [2, Self.k], scalars: rng.floats(2 * Self.k))
        var bf16 = CompileOptions(threads: 2)
        bf16.computeType = .bfloat16
        let out = try g.compile(bf16).run(["x": x])
        for (i, l) in ls.enumerated() {
            let s = Graph()
            s.output("y", try l(s.input("x", shape: [2, Self.k])))
            XCTAssertEqual(out["y\(i)"]!.scalars, try s.compile(bf16).run(["x": x])["y"]!.scalars, "member \(i)")
        }
    }
}
