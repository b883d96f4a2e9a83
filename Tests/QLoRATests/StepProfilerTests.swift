import XCTest
@testable import QLoRA

final class StepProfilerTests: XCTestCase {
    /// A profiled run records every step once per run, under its kernel, and changes no bit of the result.
    func testRecordsEveryStepOfEachRunAndLeavesResultsAlone() throws {
        var rng = SeededRandom(seed: 5)
        let gate = try QuantizedLinear(weight: Tensor(shape: [32, 16], scalars: rng.floats(512, scale: 0.1)), bias: nil,
                                       config: QLoraConfig(), name: "layers.3.gate", seed: 1)
        let down = try QuantizedLinear(weight: Tensor(shape: [16, 32], scalars: rng.floats(512, scale: 0.1)), bias: nil,
                                       config: QLoraConfig(), name: "layers.3.down", seed: 2)
        let g = Graph()
        let x = g.input("x", shape: [4, 16])
        g.output("y", try down(try g.silu(try gate(x))))
        let plan = try g.compile(CompileOptions(threads: 2))
        let feed = ["x": try Tensor(shape: [4, 16], scalars: (0..<64).map { Float($0 % 7) / 7 - 0.4 })]
        let plain = try plan.run(feed)["y"]!.scalars
        let profiler = StepProfiler()
        let profiled = try profiler.recording { try (0..<3).map { _ in try plan.run(feed)["y"]!.scalars } }
        XCTAssertEqual(profiled, [plain, plain, plain])
        let entries = profiler.entries
        XCTAssertEqual(entries.reduce(0) { $0 + $1.calls }, 3 * plan.steps.count)
        XCTAssertEqual(Set(entries.map(\.kernel)), Set(plan.steps.map(\.kernelName)))
        XCTAssertEqual(entries.reduce(0) { $0 + $1.flops }, 3 * plan.steps.reduce(0) { $0 + $1.flops })
        XCTAssert(entries.allSatisfy { !$0.label.contains("3") }, "layer numbers are folded: \(entries.map(\.label))")
        XCTAssert(profiler.report().contains("over 3 run(s)"), profiler.report())
        // Runs outside `recording` add nothing.
        _ = try plan.run(feed)
        XCTAssertEqual(profiler.entries.reduce(0) { $0 + $1.calls }, 3 * plan.steps.count)
    }

    func testFoldsOnlyWholeNumberParts() {
        XCTAssertEqual(StepProfiler.foldingNumbers("grad.model.layers.12.mlp.down_proj"), "grad.model.layers.#.mlp.down_proj")
        XCTAssertEqual(StepProfiler.foldingNumbers("layers.0"), "layers.#")
        XCTAssertEqual(StepProfiler.foldingNumbers("q4_proj.v2"), "q4_proj.v2")
    }
}
