import XCTest
@testable import QLoRA

/// softmax: the worked example of adding an op (one definition, one kernel, these tests).
final class SoftmaxTests: XCTestCase {
    /// Softmax of each row of width `width`, in double.
    func reference(_ x: [Float], width: Int) -> [Float] {
        stride(from: 0, to: x.count, by: width).flatMap { start -> [Float] in
            let row = x[start..<start + width].map(Double.init)
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            return e.map { Float($0 / s) }
        }
    }

    func run(_ shape: [Int], _ x: [Float], threads: Int) throws -> Tensor {
        let g = Graph()
        g.output("p", try g.softmax(g.input("x", shape: shape), label: "probs"))
        return try g.compile(CompileOptions(threads: threads)).run(["x": Tensor(shape: shape, scalars: x)])["p"]!
    }

    func testMatchesDirectComputationForAnyRank() throws {
        var rng = SeededRandom(seed: 11)
        for shape in [[7], [3, 5], [2, 3, 9], [2, 2, 3, 4]] {
            let x = rng.floats(shape.reduce(1, *), scale: 4)
            let p = try run(shape, x, threads: 2)
            XCTAssertEqual(p.shape, shape)
            assertClose(p.scalars, reference(x, width: shape.last!), relative: 1e-5, "softmax \(shape)")
        }
    }

    func testLargeLogitsDoNotOverflow() throws {
        let p = try run([2, 3], [1000, 1001, 1002, -1000, 0, 1000], threads: 1).scalars
        XCTAssert(p.allSatisfy(\.isFinite), "\(p)")
        assertClose(p, reference([1000, 1001, 1002, -1000, 0, 1000], width: 3), relative: 1e-6, "large logits")
        XCTAssertEqual(p[0] + p[1] + p[2], 1, accuracy: 1e-6)
    }

    func testBitwiseIdenticalForOneAndTwoThreads() throws {
        // 65536 elements: above the kernel's threading threshold, so two threads really split rows.
        let shape = [2, 4, 64, 128]
        var rng = SeededRandom(seed: 12)
        let x = rng.floats(shape.reduce(1, *), scale: 3)
        XCTAssertEqual(try run(shape, x, threads: 1).scalars, try run(shape, x, threads: 2).scalars)
    }

    func testGraphFilesSpellItWithoutLoaderChanges() throws {
        let json = #"""
        {"format": "qlora-graph", "version": 1, "dims": {"vocab": 6},
         "inputs": [{"name": "logits", "shape": ["...", "vocab"]}],
         "ops": [{"op": "scale", "inputs": ["logits"], "output": "scaled", "factor": 0.5},
                 {"op": "softmax", "inputs": ["scaled"], "output": "probs"}],
         "outputs": [{"name": "probs"}]}
        """#
        let def = try GraphDefinition.parse(Array(json.utf8), file: "softmax.json")
        let loaded = try def.load(weights: nil, options: GraphLoadOptions(inputShapes: ["logits": [2, 6]]))
        XCTAssert(loaded.graph.text.contains("= softmax(%1) : f32[2x6]  # probs"), loaded.graph.text)
        let x: [Float] = [1, 2, 3, 4, 5, 6, -1, 0, 1, 0, -1, 2]
        let p = try loaded.graph.compile(CompileOptions(threads: 1)).run(["logits": Tensor(shape: [2, 6], scalars: x)])["probs"]!
        assertClose(p.scalars, reference(x.map { $0 * 0.5 }, width: 6), relative: 1e-5, "graph file softmax")
        XCTAssertThrowsError(try GraphDefinition.parse(Array(json.replacingOccurrences(of: #""output": "probs"}"#,
                                                                                      with: #""output": "probs", "axis": 0}"#).utf8),
                                                       file: "softmax.json")) { XCTAssert("\($0)".contains("axis"), "\($0)") }
    }
}

/// A node with two results: softmax and its log-sum-exp from one step.
final class MultipleResultTests: XCTestCase {
    func testSoftmaxWithLogSumExpGivesBothResultsFromOneStep() throws {
        let g = Graph()
        let x = g.input("x", shape: [2, 3, 5])
        let (p, lse) = try g.softmaxWithLogSumExp(x, label: "sm")
        XCTAssertEqual(p.shape, [2, 3, 5]); XCTAssertEqual(lse.shape, [2, 3])
        // Both results feed later steps and outputs; the relu reads the second result in the arena.
        g.output("p", p)
        g.output("lse_relu", try g.relu(lse))
        g.output("lse", lse)
        XCTAssert(g.text.contains("softmax[log-sum-exp](%0) : (f32[2x3x5], f32[2x3])  # sm"), g.text)
        XCTAssert(g.text.contains("result[1](%1) : f32[2x3]  # sm.1"), g.text)
        let dump = try g.dump(stage: .optimized, format: .json)
        XCTAssert(dump.contains("\"extra_results\""), dump)
        let decoded = try IRDump.decode(JSONValue.parse(Array(dump.utf8), file: "d", field: "$"))
        XCTAssertEqual(decoded, try g.irDump(stage: .optimized))
        XCTAssertEqual(decoded.nodes[1].extraResults, [ValueType(shape: [2, 3], element: .float32)])
        var rng = SeededRandom(seed: 13)
        let xv = try Tensor(shape: [2, 3, 5], scalars: rng.floats(30, scale: 5))
        var outs: [[String: Tensor]] = []
        for threads in [1, 2] {
            let plan = try g.compile(CompileOptions(threads: threads))
            XCTAssertEqual(plan.steps.map(\.kernelName), ["softmax", "relu"])
            outs.append(try plan.run(["x": xv]))
        }
        XCTAssertEqual(outs[0], outs[1])
        let out = outs[0]
        let expectedLSE = (0..<6).map { r -> Float in
            let row = xv.scalars[r * 5..<(r + 1) * 5].map(Double.init)
            return Float(row.max()! + Foundation.log(row.map { Foundation.exp($0 - row.max()!) }.reduce(0, +)))
        }
        assertClose(out["lse"]!.scalars, expectedLSE, relative: 1e-6, "log-sum-exp")
        assertClose(out["lse_relu"]!.scalars, expectedLSE.map { max($0, 0) }, relative: 1e-6, "relu of the second result")
        // p = exp(x - lse) row by row.
        assertClose(out["p"]!.scalars, xv.scalars.enumerated().map { Float(Foundation.exp(Double($1 - expectedLSE[$0 / 5]))) },
                    relative: 1e-5, "probabilities")
    }

    func testResultIndexIsChecked() throws {
        let g = Graph()
        let x = g.input("x", shape: [4])
        XCTAssertThrowsError(try g.record(Op(ResultOp(index: 1)), [x], "r")) { XCTAssert("\($0)".contains("result 1 of an operand with 1 result"), "\($0)") }
    }
}
