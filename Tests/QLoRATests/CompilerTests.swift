import XCTest
@testable import QLoRA

final class CompilerTests: XCTestCase {
    func layer(_ out: Int, _ inF: Int, bias: Bool = true, seed: UInt64 = 1, name: String = "proj") throws -> QuantizedLinear {
        var rng = SeededRandom(seed: seed)
        let w = try Tensor(shape: [out, inF], scalars: rng.floats(out * inF, scale: 0.1))
        return try QuantizedLinear(weight: w, bias: bias ? Tensor(shape: [out], scalars: rng.floats(out)) : nil,
                                   config: QLoraConfig(), name: name, seed: seed)
    }

    func ops(_ g: IRGraph) -> [String] { g.nodes.filter { !$0.op.isLeaf }.map(\.op.name) }

    func testRecordingComputesNothingAndPrints() throws {
        let l = try layer(16, 64)
        let g = Graph()
        let y = try l(g.input("x", shape: [4, 64]))
        g.output("y", y)
        XCTAssertEqual(y.shape, [4, 16])
        XCTAssertEqual(ops(g.snapshot), ["dequantize", "matmul", "matmul", "matmul", "scale", "add", "add"])
        let text = g.text
        XCTAssert(text.contains("%0 = input[x]() : f32[4x64]"), text)
        XCTAssert(text.contains("quantized_weight[nf4, block 64, double-quant]() : q4[16x64]"), text)
        XCTAssert(text.contains("output y = %"), text)
    }

    func testFusionMakesOneKernelPerLayer() throws {
        for bias in [true, false] {
            let l = try layer(16, 64, bias: bias)
            let g = Graph()
            g.output("y", try l(g.input("x", shape: [4, 64])))
            let fused = try Compiler.optimize(g.snapshot, options: CompileOptions(fusion: true))
            XCTAssertEqual(ops(fused), ["fused_qlora_linear"])
            guard let a = fused.nodes.last!.op.as(FusedLinearOp.self)?.attributes else { return XCTFail() }
            XCTAssertTrue(a.hasLora); XCTAssertEqual(a.hasBias, bias); XCTAssertEqual(a.scaling, 2)
            let unfused = try Compiler.optimize(g.snapshot, options: CompileOptions(fusion: false))
            XCTAssertEqual(ops(unfused).count, bias ? 7 : 6)
        }
    }

    func testFusionLeavesSharedIntermediatesAlone() throws {
        // The base matmul is also an output: it cannot be absorbed, so no LoRA fusion happens.
        let l = try layer(8, 32, bias: false)
        let g = Graph()
        let x = g.input("x", shape: [2, 32])
        let y = try l(x)
        g.output("y", y)
        let snapshot = g.snapshot
        let base = snapshot.nodes.first { $0.label == "proj.base" }!
        g.output("base", Value(graph: g, id: base.id, type: base.type))
        let opt = try Compiler.optimize(g.snapshot, options: CompileOptions())
        // the base matmul fuses alone (no LoRA), the LoRA chain stays
        XCTAssert(ops(opt).contains("fused_qlora_linear"))
        XCTAssert(ops(opt).contains("scale"))
        let plan = try g.compile(CompileOptions(threads: 1))
        var rng = SeededRandom(seed: 2)
        let out = try plan.run(["x": Tensor(shape: [2, 32], scalars: rng.floats(64))])
        XCTAssertEqual(out["base"]!.shape, [2, 8]); XCTAssertEqual(out["y"]!.shape, [2, 8])
    }

    func testSwiGLUFusesAndDeadCodeGoes() throws {
        let gate = try layer(32, 16, name: "gate"), up = try layer(32, 16, seed: 2, name: "up"), down = try layer(16, 32, seed: 3, name: "down")
        let g = Graph()
        let x = g.input("x", shape: [3, 16])
        _ = try g.relu(x, label: "unused")   // dead
        let h = try g.mul(try g.silu(try gate(x)), try up(x))
        g.output("y", try down(h))
        let opt = try Compiler.optimize(g.snapshot, options: CompileOptions())
        // gate/up share x: one group step with the silu·mul epilogue (LinearGroupFusion).
        XCTAssertEqual(ops(opt), ["fused_qlora_linear_group_silu_mul", "fused_qlora_linear"])
        let unfusedPlan = try g.compile(CompileOptions(threads: 1, fusion: false))
        let fusedPlan = try g.compile(CompileOptions(threads: 1, fusion: true))
        var rng = SeededRandom(seed: 9)
        let xv = try Tensor(shape: [3, 16], scalars: rng.floats(48))
        assertClose(try fusedPlan.run(["x": xv])["y"]!.scalars, try unfusedPlan.run(["x": xv])["y"]!.scalars, relative: 1e-5, "swiglu")
    }

    func testVerifyRejectsMalformedGraphs() throws {
        var g = IRGraph()
        g.nodes = [Node(id: 0, op: .input(name: "x"), operands: [], type: ValueType(shape: [2, 4], element: .float32), label: "x"),
                   Node(id: 1, op: .relu, operands: [2], type: ValueType(shape: [2, 4], element: .float32), label: "r"),
                   Node(id: 2, op: .relu, operands: [0], type: ValueType(shape: [2, 4], element: .float32), label: "r2")]
        g.inputs = [("x", 0)]; g.outputs = [("y", 1)]
        XCTAssertThrowsError(try VerifyPass.run(g)) { XCTAssert("\($0)".contains("not an earlier node"), "\($0)") }
        g.nodes[1].operands = [0]; g.nodes[1].type.shape = [4, 2]
        XCTAssertThrowsError(try VerifyPass.run(g)) { guard case QLoraError.shapeMismatch = $0 else { return XCTFail("\($0)") } }
        g.nodes[1].type.shape = [2, 4]
        XCTAssertNoThrow(try VerifyPass.run(g))
        g.outputs = []
        XCTAssertThrowsError(try VerifyPass.run(g))
        let dup = Graph()
        let a = dup.input("x", shape: [2]); _ = dup.input("x", shape: [2])
        dup.output("y", a)
        XCTAssertThrowsError(try dup.compile()) { XCTAssert("\($0)".contains("declared twice"), "\($0)") }
        let zero = Graph(); zero.output("y", zero.input("x", shape: [0, 3]))
        XCTAssertThrowsError(try zero.compile())
        XCTAssertThrowsError(try Graph().compile()) { XCTAssert("\($0)".contains("no outputs"), "\($0)") }
    }

    func testRecordingShapeErrorsNameTheOp() throws {
        let g = Graph()
        let a = g.input("a", shape: [2, 3]), b = g.input("b", shape: [3, 2])
        XCTAssertThrowsError(try g.add(a, b, label: "sum")) { e in
            guard case let QLoraError.shapeMismatch(context, expected, actual) = e else { return XCTFail("\(e)") }
            XCTAssert(context.contains("add 'sum'"), context); XCTAssertEqual(expected, [2, 3]); XCTAssertEqual(actual, [3, 2])
        }
        XCTAssertThrowsError(try g.matmul(a, b, label: "mm"))
        XCTAssertThrowsError(try g.reshape(a, to: [4, 2]))
        XCTAssertThrowsError(try g.add(a, Graph().input("c", shape: [2, 3])))
    }

    /// A chain of 4 layers with activations: the arena is at most half of all intermediates, and no
    /// two buffers that are live at the same time overlap.
    func testMemoryPlanReusesBuffersWithoutOverlap() throws {
        for fusion in [true, false] {
            let g = Graph()
            var h = g.input("x", shape: [8, 64])
            for i in 0..<4 {
                h = try layer(64, 64, seed: UInt64(i), name: "l\(i)")(h)
                h = i % 2 == 0 ? try g.relu(h) : try g.silu(h)
            }
            g.output("y", h)
            let plan = try g.compile(CompileOptions(mode: .onTheFly, threads: 2, fusion: fusion))
            let buffers = plan.memory.buffers
            let arenaBuffers = plan.arenaBytes - plan.scratchBytes
            XCTAssertLessThanOrEqual(arenaBuffers * 2, plan.unsharedBufferBytes, "fusion=\(fusion): \(plan.summary)")
            for i in buffers.indices {
                for j in buffers.indices where j > i {
                    let a = buffers[i], b = buffers[j]
                    let liveTogether = a.start <= b.end && b.start <= a.end
                    let overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes
                    XCTAssertFalse(liveTogether && overlap, "buffers of %\(a.node) and %\(b.node) overlap")
                }
                XCTAssertLessThanOrEqual(buffers[i].offset + buffers[i].bytes, plan.memory.scratchOffset)
            }
            // Running twice in the same arena gives the same answer.
            var rng = SeededRandom(seed: 4)
            let x = try Tensor(shape: [8, 64], scalars: rng.floats(512))
            XCTAssertEqual(try plan.run(["x": x])["y"]!.scalars, try plan.run(["x": x])["y"]!.scalars)
        }
    }

    func testAutoModeFollowsTheCostModel() throws {
        let l = try layer(256, 512)
        let g = Graph()
        g.output("y", try l(g.input("x", shape: [1, 512])))
        let plan = try g.compile(CompileOptions(mode: .auto, threads: 2))
        XCTAssertEqual(plan.decisions.first?.mode, .onTheFly)
        XCTAssertEqual(plan.decisions.first?.rows, 1)
        // A machine whose fused kernel decodes slowly (half the GEMM rate) prefers cached at large M only.
        let slowDecode = CostModel(bandwidthBytesPerSecond: 20e9, sgemmFlopsPerSecond: 200e9, fusedEfficiency: 0.5)
        for (m, expected) in [(1, ExecutionMode.onTheFly), (8, .onTheFly), (4096, .cached)] {
            let g = Graph()
            g.output("y", try l(g.input("x", shape: [m, 512])))
            let lowered = ModeLowering.run(DeadCodeElimination.run(FusionPass.run(g.snapshot)), mode: .auto, model: slowDecode)
            XCTAssertEqual(lowered.decisions.first?.mode, expected, "M=\(m)")
            let fused = lowered.graph.nodes.first { $0.op.name == "fused_qlora_linear" }!
            XCTAssertEqual(lowered.graph.nodes[fused.operands[1]].op.name, expected == .cached ? "cached_weight" : "quantized_weight")
        }
        // The default model: bandwidth-bound small M never prefers the 8× larger f32 weight.
        let model = CostModel.default(threads: 2)
        XCTAssertFalse(model.prefersCached(m: 1, n: 11008, k: 4096, bitsPerWeight: 4.127))
        XCTAssertFalse(model.prefersCached(m: 16, n: 11008, k: 4096, bitsPerWeight: 4.127))
    }

    func testSummaryAndPersistentMemory() throws {
        let l = try layer(64, 128)
        let g = Graph()
        g.output("y", try l(g.input("x", shape: [4, 128])))
        let otf = try g.compile(CompileOptions(mode: .onTheFly, threads: 2))
        let cached = try g.compile(CompileOptions(mode: .cached, threads: 2))
        XCTAssertEqual(otf.steps.count, 1)
        // cached reads the f32 copy instead of the 4-bit weight
        XCTAssertEqual(cached.persistentBytes - otf.persistentBytes, 64 * 128 * 4 - l.quantizedWeight.memoryBytes)
        let s = otf.summary
        XCTAssert(s.contains("1 steps, 1 fused groups"), s)
        XCTAssert(s.contains("fused_qlora_linear(on-the-fly)"), s)
        XCTAssert(s.contains("arena"), s); XCTAssert(s.contains("persistent"), s)
        XCTAssert(cached.summary.contains("dense_qlora_linear(cached)"), cached.summary)
    }
}

final class SharedLayerTests: XCTestCase {
    /// A layer applied twice shares one weight and one set of parameters in the plan.
    func testLayerCalledTwiceSharesPersistentData() throws {
        var rng = SeededRandom(seed: 8)
        let l = try QuantizedLinear(weight: Tensor(shape: [32, 32], scalars: rng.floats(1024)), config: QLoraConfig(), seed: 1)
        let g = Graph()
        let x = g.input("x", shape: [2, 32])
        g.output("y", try l(try g.relu(try l(x))))
        let plan = try g.compile(CompileOptions(threads: 1))
        XCTAssertEqual(plan.memory.weights.count, 1)
        XCTAssertEqual(plan.memory.parameters.count, 2)
        XCTAssertEqual(plan.persistentBytes, l.memoryBytes)
        let xv = try Tensor(shape: [2, 32], scalars: rng.floats(64))
        let once = try l.forward(xv)
        let relu = try Tensor(shape: [2, 32], scalars: once.scalars.map { max($0, 0) })
        assertClose(try plan.run(["x": xv])["y"]!.scalars, try l.forward(relu).scalars, relative: 1e-6, "twice")
    }
}

final class BindingTests: XCTestCase {
    /// Inputs are read in place and outputs written in place; outputs that are not computed
    /// values of their own (an input, a reshape of it, a parameter, a value another output owns)
    /// are copied.
    func testOutputsThatAliasOtherValues() throws {
        let g = Graph()
        let x = g.input("x", shape: [2, 3])
        let p = try ParameterStorage(name: "p", tensor: Tensor(shape: [3], scalars: [1, 2, 3]), trainable: false)
        let r = try g.relu(x)
        g.output("same", x)
        g.output("flat", try g.reshape(x, to: [6]))
        g.output("relu", r)
        g.output("relu_again", try g.reshape(r, to: [3, 2]))
        g.output("param", g.parameter(p))
        g.output("shifted", try g.add(r, g.parameter(p)))
        let plan = try g.compile(CompileOptions(threads: 1))
        let xv = try Tensor(shape: [2, 3], scalars: [-1, 2, -3, 4, -5, 6])
        let out = try plan.run(["x": xv])
        XCTAssertEqual(out["same"], xv)
        XCTAssertEqual(out["flat"]!.shape, [6]); XCTAssertEqual(out["flat"]!.scalars, xv.scalars)
        XCTAssertEqual(out["relu"]!.scalars, [0, 2, 0, 4, 0, 6])
        XCTAssertEqual(out["relu_again"]!.shape, [3, 2]); XCTAssertEqual(out["relu_again"]!.scalars, [0, 2, 0, 4, 0, 6])
        XCTAssertEqual(out["param"]!.scalars, [1, 2, 3])
        XCTAssertEqual(out["shifted"]!.scalars, [1, 4, 3, 5, 2, 9])
        // The intermediates that are outputs take no arena space.
        XCTAssertEqual(plan.memory.buffers.count, 0)
    }
}

final class WorkSplitTests: XCTestCase {
    func testStepsSayHowWorkIsSplit() throws {
        var rng = SeededRandom(seed: 2)
        let l = try QuantizedLinear(weight: Tensor(shape: [48, 64], scalars: rng.floats(48 * 64)), config: QLoraConfig(), seed: 1)
        let g = Graph()
        g.output("y", try g.relu(try l(g.input("x", shape: [5, 64]))))
        let plan = try g.compile(CompileOptions(threads: 2))
        XCTAssertEqual(plan.steps.map(\.workSplit), ["48 output features × 5 rows, features split over up to 2 threads, K whole per output",
                                                      "240 elements, 1 thread"])
        XCTAssertEqual(PlanReport(plan).steps.map(\.workSplit), plan.steps.map(\.workSplit))
    }
}
