import XCTest
@testable import QLoRA

/// Symbolic dimensions in the IR: one recorded graph, plans compiled per concrete size; and the
/// bounded plan cache of a layer.
final class SymbolicShapeTests: XCTestCase {
    let seq = SymbolicDimension.named("seq")

    func layer() throws -> QuantizedLinear {
        var rng = SeededRandom(seed: 41)
        let l = try QuantizedLinear(weight: Tensor(shape: [16, 32], scalars: rng.floats(512, scale: 0.2)),
                                    bias: Tensor(shape: [16], scalars: rng.floats(16)), config: QLoraConfig(), name: "proj", seed: 3)
        try l.setLoraWeights(a: Tensor(shape: [8, 32], scalars: rng.floats(256, scale: 0.1)),
                             b: Tensor(shape: [16, 8], scalars: rng.floats(128, scale: 0.1)))
        return l
    }

    func testOneGraphCompiledForTwoSizesMatchesDirectComputation() throws {
        let l = try layer()
        let g = Graph()
        let x = g.input("x", shape: [seq, 32])
        let h = try g.softmax(g.relu(l(x)))
        XCTAssertEqual(h.shape, [seq, 16])
        g.output("y", try g.reshape(h, to: [seq, 4, 4]))
        XCTAssert(g.text.contains("input[x]() : f32[seqx32]"), g.text)
        var rng = SeededRandom(seed: 42)
        for m in [3, 7] {
            let plan = try g.compile(CompileOptions(threads: 2), sizes: ["seq": m])
            XCTAssertEqual(plan.inputShapes["x"], [m, 32])
            let xv = try Tensor(shape: [m, 32], scalars: rng.floats(m * 32))
            let y = try plan.run(["x": xv])["y"]!
            XCTAssertEqual(y.shape, [m, 4, 4])
            // Direct: the layer's own eager path, then relu and a softmax per row.
            let linear = try l.forward(xv).scalars
            var expected: [Float] = []
            for r in 0..<m {
                let row = linear[r * 16..<(r + 1) * 16].map { Double(max($0, 0)) }
                let e = row.map { Foundation.exp($0 - row.max()!) }
                expected += e.map { Float($0 / e.reduce(0, +)) }
            }
            assertClose(y.scalars, expected, relative: 1e-5, "seq=\(m)")
        }
        XCTAssertThrowsError(try g.compile()) { XCTAssert("\($0)".contains("dimension 'seq' has no size"), "\($0)") }
        XCTAssertThrowsError(try g.compile(sizes: ["seq": 0]))
    }

    func testTypeRulesCompareSymbols() throws {
        let g = Graph()
        let a = g.input("a", shape: [seq, 8]), b = g.input("b", shape: [SymbolicDimension.named("batch"), 8])
        XCTAssertThrowsError(try g.add(a, b)) { guard case QLoraError.shapeMismatch = $0 else { return XCTFail("\($0)") } }
        XCTAssertEqual(try g.reshape(a, to: [seq, 2, 4]).shape, [seq, 2, 4])
        XCTAssertEqual(try g.reshape(a, to: [8, seq]).shape, [8, seq])
        XCTAssertThrowsError(try g.reshape(a, to: [seq, 16]))
        XCTAssertThrowsError(try g.reshape(a, to: [64]))
    }

    func testSymbolicDumpRoundTrips() throws {
        let g = Graph()
        g.output("y", try g.silu(g.input("x", shape: [seq, 4])))
        let text = try g.dump(stage: .recorded, format: .json)
        XCTAssert(text.contains("\"seq\""), text)
        XCTAssertEqual(try IRDump.decode(JSONValue.parse(Array(text.utf8), file: "d", field: "$")), try g.irDump(stage: .recorded))
        XCTAssert(try g.dump(stage: .optimized, format: .text).contains("silu(%0) : f32[seqx4]"))
        let unknown = Graph()
        unknown.output("y", unknown.input("x", shape: [-12345, 4]))   // negative but no symbol's number
        XCTAssertThrowsError(try unknown.dump(stage: .optimized, format: .text))
    }

    func testLayerPlanCacheIsBoundedAndDropsTheLeastRecentlyUsed() throws {
        let l = try layer()
        XCTAssertEqual(l.planCacheCapacity, 8)
        l.planCacheCapacity = 2
        var rng = SeededRandom(seed: 43)
        func run(_ m: Int) throws { _ = try l.forward(Tensor(shape: [m, 32], scalars: rng.floats(m * 32))) }
        try run(1); try run(2); try run(3)
        XCTAssertEqual(l.cachedPlanShapes, [[2, 32], [3, 32]])
        try run(2)
        XCTAssertEqual(l.cachedPlanShapes, [[3, 32], [2, 32]])
        try run(4)
        XCTAssertEqual(l.cachedPlanShapes, [[2, 32], [4, 32]])
        l.planCacheCapacity = 1
        XCTAssertEqual(l.cachedPlanShapes, [[4, 32]])
        l.planCacheCapacity = 0   // clamped: a layer always keeps its last plan
        XCTAssertEqual(l.planCacheCapacity, 1)
    }

    func testASymbolMeetingASizeTakesIt() throws {
        let g = Graph()
        let x = g.input("x", shape: [seq, 8]), y = g.input("y", shape: [3, 8])
        g.output("z", try g.add(x, y))
        let plan = try g.compile(CompileOptions(threads: 1))
        XCTAssertEqual(plan.inputShapes["x"], [3, 8])
        XCTAssertThrowsError(try g.compile(sizes: ["seq": 4]), "a size that contradicts what the graph learned")
    }

    /// Graph files record through the same engine: a name used only by a second input gets its
    /// size from the add that meets the first.
    func testGraphFileDimensionsComeFromTheTypeRules() throws {
        let json = #"""
        {"format": "qlora-graph", "version": 1,
         "inputs": [{"name": "a", "shape": ["...", "n"]}, {"name": "b", "shape": ["...", "m"]}],
         "ops": [{"op": "add", "inputs": ["a", "b"], "output": "c"}, {"op": "softmax", "inputs": ["c"], "output": "p"}],
         "outputs": [{"name": "p"}]}
        """#
        let def = try GraphDefinition.parse(Array(json.utf8), file: "two.json", dims: ["n": 5, "tokens": 2])
        let loaded = try def.load(weights: nil)
        XCTAssertEqual(loaded.dims["m"], 5)
        XCTAssertEqual(loaded.inputs.map(\.shape), [[2, 5], [2, 5]])
        XCTAssert(loaded.graph.text.contains("input[b]() : f32[2x5]"), loaded.graph.text)
        XCTAssertThrowsError(try GraphDefinition.parse(Array(json.utf8), file: "two.json", dims: ["n": 5, "m": 6]).load(weights: nil)) { e in
            XCTAssert("\(e)".contains("$.ops[0]"), "\(e)")
        }
    }
}
