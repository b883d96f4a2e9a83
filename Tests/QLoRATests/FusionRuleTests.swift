import XCTest
@testable import QLoRA

/// The fusion rules as patterns: a repeated name must bind one node, and absorbed nodes must have
/// no other use.
final class FusionRuleTests: XCTestCase {
    func recordLinear(loraInput: (Graph, Value) throws -> Value) throws -> (Graph, IRGraph) {
        var rng = SeededRandom(seed: 3)
        let w = try QuantizedTensor.quantize(Tensor(shape: [8, 16], scalars: rng.floats(128)), quantType: .nf4, blockSize: 64,
                                             doubleQuant: false, name: "w")
        let a = try ParameterStorage(name: "A", tensor: Tensor(shape: [4, 16], scalars: rng.floats(64)), trainable: true)
        let b = try ParameterStorage(name: "B", tensor: Tensor(shape: [8, 4], scalars: rng.floats(32)), trainable: true)
        let g = Graph()
        let x = g.input("x", shape: [2, 16])
        let base = try g.matmul(x, g.dequantize(g.quantizedWeight(QuantizedWeightStorage(name: "w", weight: w))))
        let lora = try g.scale(g.matmul(g.matmul(loraInput(g, x), g.parameter(a)), g.parameter(b)), by: 0.5)
        g.output("y", try g.add(lora, base))
        return (g, try Compiler.optimize(g.snapshot, options: CompileOptions(threads: 1)))
    }

    func computing(_ g: IRGraph) -> [String] { g.nodes.filter { !$0.op.isLeaf }.map(\.op.name) }

    func testLoraOfTheSameInputFusesInEitherOrder() throws {
        let (_, fused) = try recordLinear { _, x in x }
        XCTAssertEqual(computing(fused), ["fused_qlora_linear"])
        let a = fused.nodes.last!.op.as(FusedLinearOp.self)!.attributes
        XCTAssertEqual(a.scaling, 0.5)
        XCTAssertEqual(a.fusedOps, ["dequantize", "matmul", "matmul(x,A)", "matmul(·,B)", "scale", "add"])
    }

    func testLoraOfAnotherInputStaysUnfused() throws {
        let (g, fused) = try recordLinear { g, x in try g.relu(x) }
        XCTAssertEqual(computing(fused), ["fused_qlora_linear", "relu", "matmul", "matmul", "scale", "add"])
        // Same values either way.
        var rng = SeededRandom(seed: 5)
        let x = try Tensor(shape: [2, 16], scalars: rng.floats(32))
        let f = try g.compile(CompileOptions(threads: 1)).run(["x": x])["y"]!
        let u = try g.compile(CompileOptions(threads: 1, fusion: false)).run(["x": x])["y"]!
        assertClose(f.scalars, u.scalars, relative: 1e-5, "fused vs unfused")
    }

    func testRepeatedNameMustBindOneNode() {
        var g = IRGraph()
        let t = ValueType(shape: [2], element: .float32)
        g.nodes = [Node(id: 0, op: .input(name: "a"), operands: [], type: t, label: "a"),
                   Node(id: 1, op: .input(name: "b"), operands: [], type: t, label: "b"),
                   Node(id: 2, op: .mul, operands: [0, 1], type: t, label: ""),
                   Node(id: 3, op: .mul, operands: [0, 0], type: t, label: "")]
        let square = Pattern.op(MulOp.self, "m", .value("x"), .value("x"))
        XCTAssertNil(PatternMatch.match(square, at: 2, in: g, uses: g.useCounts(), commutative: false))
        XCTAssertEqual(PatternMatch.match(square, at: 3, in: g, uses: g.useCounts(), commutative: false)?["x"], 0)
    }
}
