import XCTest
@testable import QLoRA

/// Persistent state updated in place across runs, and the memory plan with in-place steps.
final class StateTests: XCTestCase {
    /// relu(x) accumulated into a persistent [4, 8] buffer; `y` = 2·x is what the run returns.
    func accumulatorPlan(_ state: StateStorage, threads: Int, outputSum: Bool) throws -> ExecutablePlan {
        let g = Graph()
        let x = g.input("x", shape: [4, 8])
        let sum = try g.accumulate(g.state(state), try g.relu(x, label: "r"), label: "acc")
        g.output("y", try g.scale(x, by: 2))
        if outputSum { g.output("sum", sum) }
        return try g.compile(CompileOptions(threads: threads))
    }

    func testAccumulatorKeepsItsValueAcrossThreeRuns() throws {
        var rng = SeededRandom(seed: 31)
        let xs = try (0..<3).map { _ in try Tensor(shape: [4, 8], scalars: rng.floats(32)) }
        var expected = [Float](repeating: 0, count: 32)
        var finals: [[Float]] = []
        for threads in [1, 2] {
            for outputSum in [true, false] {
                let state = try StateStorage(name: "grad", shape: [4, 8])
                let plan = try accumulatorPlan(state, threads: threads, outputSum: outputSum)
                XCTAssertEqual(plan.steps.filter { $0.kernelName == "accumulate(in-place)" }.count, 1, plan.summary)
                expected = [Float](repeating: 0, count: 32)
                for x in xs {
                    let out = try plan.run(["x": x])
                    for i in 0..<32 { expected[i] += max(x.scalars[i], 0) }
                    XCTAssertEqual(state.tensor.scalars, expected, "threads \(threads), sum output \(outputSum)")
                    if outputSum { XCTAssertEqual(out["sum"]!.scalars, expected) } else { XCTAssertNil(out["sum"]) }
                    XCTAssertEqual(out["y"]!.scalars, x.scalars.map { $0 * 2 })
                }
                finals.append(state.tensor.scalars)
                XCTAssertEqual(plan.persistentBytes, 32 * 4)
                state.reset()
                XCTAssertEqual(state.tensor.scalars, [Float](repeating: 0, count: 32))
            }
        }
        XCTAssert(finals.allSatisfy { $0 == finals[0] }, "1 and 2 threads give the same bits")
        XCTAssertNotEqual(expected, [Float](repeating: 0, count: 32))
    }

    func testStateUpdatesAreVerified() throws {
        let state = try StateStorage(name: "s", shape: [2])
        let g = Graph()
        let x = g.input("x", shape: [2])
        let s = g.state(state)
        let first = try g.accumulate(s, x)
        g.output("y", try g.add(s, first))   // reads the state after its update
        XCTAssertThrowsError(try g.compile()) { XCTAssert("\($0)".contains("after %"), "\($0)") }
        let h = Graph()
        let notState = try h.relu(h.input("x", shape: [2]))
        h.output("y", try h.accumulate(notState, notState))
        XCTAssertThrowsError(try h.compile()) { XCTAssert("\($0)".contains("which is not a state"), "\($0)") }
        XCTAssertThrowsError(try StateStorage(name: "bad", shape: [0]))
    }

    /// Replays a plan's steps: no step may write a region that holds a value some later step
    /// still reads (except the operand it takes over, which is dead after it).
    func assertNoLiveBufferOverwritten(_ plan: ExecutablePlan, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let g = plan.ir
        // node → (where: -1 for the arena, k for output array k; the bytes it occupies there)
        var region = [Int: (space: Int, bytes: Range<Int>)]()
        var defined = [Int: Int](), lastRead = [Int: Int]()
        for n in g.nodes {
            switch plan.memory.refs[n.id] {
            case let .arena(offset, bytes)?: region[n.id] = (-1, offset..<offset + bytes)
            case let .output(k)?: region[n.id] = (k, 0..<n.type.byteCount)
            default: break
            }
        }
        for (t, s) in plan.steps.enumerated() {
            defined[s.node] = t
            for o in g.nodes[s.node].operands { lastRead[o] = t }
        }
        // Aliases (reshapes) are defined with their operand and read through themselves.
        for n in g.nodes where n.op.definition.isAlias { defined[n.id] = defined[n.operands[0]] ?? -1 }
        for (t, s) in plan.steps.enumerated() {
            guard let written = region[s.node] else { continue }
            for (v, r) in region where v != s.node && r.space == written.space && r.bytes.overlaps(written.bytes) {
                guard let d = defined[v], d < t, let last = lastRead[v], last > t else { continue }
                XCTFail("\(what): step \(t) (\(s.kernelName)) overwrites %\(v), still read at step \(last)", file: file, line: line)
            }
        }
    }

    func testInPlaceStepsNeverOverwriteALiveBuffer() throws {
        var rng = SeededRandom(seed: 32)
        let layers = try (0..<4).map { i in
            try QuantizedLinear(weight: Tensor(shape: [64, 64], scalars: rng.floats(4096, scale: 0.1)), config: QLoraConfig(),
                                name: "l\(i)", seed: UInt64(i))
        }
        for fusion in [true, false] {
            let g = Graph()
            var h = g.input("x", shape: [8, 64])
            for (i, l) in layers.enumerated() { h = try l(h); h = i % 2 == 0 ? try g.relu(h) : try g.softmax(h) }
            g.output("y", h)
            let plan = try g.compile(CompileOptions(threads: 2, fusion: fusion))
            assertNoLiveBufferOverwritten(plan, "chain fusion=\(fusion)")
            // Every activation ran in place over its layer's result.
            let activations = plan.steps.filter { ["relu", "softmax"].contains($0.kernelName) }
            XCTAssertEqual(activations.count, 4)
            for s in activations {
                XCTAssertEqual(s.output, s.operands[0], "\(s.kernelName) in place, fusion=\(fusion)")
            }
        }
    }

    /// A value read later through a reshape must not be taken over, whichever order they were recorded in.
    func testInPlaceRespectsReadsThroughAliases() throws {
        let xv = try Tensor(shape: [4, 6], scalars: (0..<24).map { Float($0) / 7 - 1.5 })
        for reshapeFirst in [true, false] {
            let g = Graph()
            let a = try g.relu(g.input("x", shape: [4, 6]), label: "a")
            var flat: Value?
            if reshapeFirst { flat = try g.reshape(a, to: [24]) }
            let b = try g.silu(a, label: "b")   // may not run in place: a is still read below
            if !reshapeFirst { flat = try g.reshape(a, to: [24]) }
            g.output("y", try g.mul(g.reshape(flat!, to: [4, 6]), b))
            let plan = try g.compile(CompileOptions(threads: 1))
            assertNoLiveBufferOverwritten(plan, "reshape first \(reshapeFirst)")
            let y = try plan.run(["x": xv])["y"]!.scalars
            let expected = xv.scalars.map { v -> Float in let r = max(v, 0); return r * (r / (1 + Foundation.exp(-r))) }
            assertClose(y, expected, relative: 1e-6, "reshape first \(reshapeFirst)")
        }
    }

    /// The shipped residual MLP stack: its residual stream runs in place through the output array.
    func testStackedBlocksNeverOverwriteALiveBuffer() throws {
        let def = try GraphDefinition.load(url: Reference.projectRoot.appendingPathComponent("Graphs/llama-mlp-stack.json"),
                                           dims: ["hidden": 32, "intermediate": 48, "tokens": 3, "layers": 3])
        let g = try def.load(weights: nil).graph
        var rng = SeededRandom(seed: 33)
        let x = try Tensor(shape: [3, 32], scalars: rng.floats(96))
        var results: [[Float]] = []
        for fusion in [true, false] {
            for mode in [ExecutionMode.onTheFly, .cached] {
                let plan = try g.compile(CompileOptions(mode: mode, threads: 2, fusion: fusion))
                assertNoLiveBufferOverwritten(plan, "stack fusion=\(fusion) \(mode)")
                results.append(try plan.run(["x": x])["y"]!.scalars)
            }
        }
        for r in results.dropFirst() { assertClose(r, results[0], relative: 1e-5, "every plan computes the same") }
    }
}
