import XCTest
@testable import QLoRA

/// Trainable tensors in one flat buffer, gradients in another.
final class ParameterStoreTests: XCTestCase {
    func testGatheringKeepsPlansWorkingAndLaysTensorsEndToEnd() throws {
        var rng = SeededRandom(seed: 51)
        let l1 = try QuantizedLinear(weight: Tensor(shape: [24, 20], scalars: rng.floats(480)), config: QLoraConfig(), name: "l1", seed: 1)
        let l2 = try QuantizedLinear(weight: Tensor(shape: [20, 24], scalars: rng.floats(480)), config: QLoraConfig(), name: "l2", seed: 2)
        try l1.setLoraWeights(a: Tensor(shape: [8, 20], scalars: rng.floats(160)), b: Tensor(shape: [24, 8], scalars: rng.floats(192)))
        let g = Graph()
        g.output("y", try l2(try g.relu(try l1(g.input("x", shape: [3, 20])))))
        let plan = try g.compile(CompileOptions(threads: 2))
        let x = try Tensor(shape: [3, 20], scalars: rng.floats(60))
        let before = try plan.run(["x": x])["y"]!
        let tensors = (l1.trainableParameters + l2.trainableParameters).map(\.tensor)

        let store = try ParameterStore(gathering: l1.trainableParameters + l2.trainableParameters)
        XCTAssertEqual(try plan.run(["x": x])["y"]!, before, "a plan compiled before gathering reads the moved values")
        XCTAssertEqual(store.offsets, [0, 160, 352, 544])   // 160, 192, 192, 160 floats, each a multiple of 16
        let flat = store.flatValues
        for (t, offset) in zip(tensors, store.offsets) { XCTAssertEqual(Array(flat[offset..<offset + t.count]), t.scalars) }
        // New values reach the flat buffer.
        let newB = try Tensor(shape: [20, 8], scalars: rng.floats(160))
        try l2.setLoraWeights(a: l2.loraWeights.a, b: newB)
        XCTAssertEqual(Array(store.flatValues[544..<704]), newB.scalars)
        XCTAssertThrowsError(try ParameterStore(gathering: l1.trainableParameters)) { XCTAssert("\($0)".contains("already in a parameter store"), "\($0)") }
    }

    func testGradientsAreSlicesOfOneFlatBuffer() throws {
        let a = try ParameterStorage(name: "a", tensor: Tensor(shape: [5], scalars: [1, 2, 3, 4, 5]), trainable: true)
        let b = try ParameterStorage(name: "b", tensor: Tensor(shape: [2, 2], scalars: [6, 7, 8, 9]), trainable: true)
        let store = try ParameterStore(gathering: [a, b])
        XCTAssertEqual(store.offsets, [0, 16]); XCTAssertEqual(store.count, 32)
        // Accumulate into b's gradient twice; a's gradient and the gap stay zero.
        let g = Graph()
        let grad = try g.accumulate(g.state(store.gradients[1]), g.input("dg", shape: [2, 2]))
        g.output("grad", grad)
        let plan = try g.compile(CompileOptions(threads: 1))
        for _ in 0..<2 { _ = try plan.run(["dg": Tensor(shape: [2, 2], scalars: [1, -1, 0.5, 2])]) }
        var expected = [Float](repeating: 0, count: 32)
        expected.replaceSubrange(16..<20, with: [2, -2, 1, 4])
        XCTAssertEqual(store.flatGradients, expected)
        XCTAssertEqual(store.gradients[1].tensor.scalars, [2, -2, 1, 4])
        store.zeroGradients()
        XCTAssertEqual(store.flatGradients, [Float](repeating: 0, count: 32))
        XCTAssertThrowsError(try ParameterStore(gathering: [try ParameterStorage(name: "frozen", tensor: Tensor(shape: [1], scalars: [0]), trainable: false)]))
    }
}
