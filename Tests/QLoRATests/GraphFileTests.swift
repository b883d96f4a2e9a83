import Foundation
import XCTest
@testable import QLoRA

/// The graph-file loader: the shipped graphs, dimension resolution, repeat expansion, and one test
/// per error class (each error must name the JSON path or tensor and the problem).
final class GraphFileTests: XCTestCase {
    static let graphs = Reference.projectRoot.appendingPathComponent("Graphs")
    static let interop = Reference.url("interop")
    static var bnbModel: URL { interop.appendingPathComponent("model_bnb4bit/model.safetensors") }

    func parse(_ json: String, dims: [String: Int] = [:]) throws -> GraphDefinition {
        try GraphDefinition.parse(Array(json.utf8), file: "test.json", dims: dims)
    }

    /// Asserts `body` throws a QLoraError whose message contains every fragment.
    func assertError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        do {
            try body()
            XCTFail("expected an error mentioning \(fragments)", file: file, line: line)
        } catch let e as QLoraError {
            for f in fragments { XCTAssert(e.description.contains(f), "'\(e)' does not mention '\(f)'", file: file, line: line) }
        } catch {
            XCTFail("not a QLoraError: \(error)", file: file, line: line)
        }
    }

    func mlp(_ ops: String, inputs: String = #"[{"name": "x", "shape": ["...", "hidden"]}]"#) -> String {
        #"{"format": "qlora-graph", "version": 1, "inputs": \#(inputs), "ops": [\#(ops)], "outputs": [{"name": "y"}]}"#
    }

    func testShippedGraphsLoadWithSyntheticWeights() throws {
        let dims = ["hidden": 32, "intermediate": 64, "in": 32, "out": 16, "tokens": 5]
        for (name, expectedLayers) in [("quantized-linear", 1), ("llama-mlp", 3), ("llama-mlp-stack", 9)] {
            let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("\(name).json"), dims: dims)
            let loaded = try def.load(weights: nil)
            XCTAssertEqual(loaded.layers.count, expectedLayers, name)
            XCTAssertEqual(loaded.inputs.first?.shape.first, 5, "\(name): batch dims are [tokens]")
            let plan = try loaded.graph.compile(CompileOptions(threads: 1))
            XCTAssertEqual(plan.outputShapes["y"]?.first, 5, name)
        }
    }

    func testLlamaMLPResolvesDimsFromTheCheckpointAndMatchesPEFT() throws {
        let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("llama-mlp.json"))
        let weights = try CheckpointWeights(url: Self.bnbModel)
        let adapter = try LoraAdapter(directory: Self.interop.appendingPathComponent("adapter"))
        let x = try Reference.tensor("interop/expected/x3d.f32", shape: [2, 4, 64])
        let loaded = try def.load(weights: weights, options: GraphLoadOptions(inputShapes: ["x": x.shape], adapter: adapter))
        XCTAssertEqual(loaded.dims["hidden"], 64)
        XCTAssertEqual(loaded.dims["intermediate"], 128)
        XCTAssertNotNil(loaded.layers["model.layers.0.mlp.up_proj"]?.bias, "bias used when the checkpoint has one")
        let y = try loaded.graph.compile(CompileOptions(threads: 2)).run(["x": x])["y"]!
        assertClose(y.scalars, try Reference.floats("interop/expected/model.layers.0.mlp.x3d.y_lora.f32"), relative: 1e-5, "y_lora x3d")
    }

    func testQuantizedLinearQuantizesF32WeightsAtLoadWithTheGivenOptions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("graphfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededRandom(seed: 7)
        let w = try Tensor(shape: [24, 40], scalars: rng.floats(960, scale: 0.2)), b = try Tensor(shape: [24], scalars: rng.floats(24))
        let url = dir.appendingPathComponent("m.safetensors")
        let writer = try SafeTensorsWriter(url: url)
        try writer.add("proj.weight", tensor: w)
        try writer.add("proj.bias", tensor: b)
        try writer.add("unused.weight", tensor: w)
        try writer.commit()
        var q = QuantizeOptions()
        q.quantType = .fp4
        q.blockSize = 32
        q.doubleQuant = false
        let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("quantized-linear.json"))
        let x = try Tensor(shape: [2, 3, 40], scalars: rng.floats(240))
        let loaded = try def.load(weights: CheckpointWeights(url: url, quantization: q), options: GraphLoadOptions(inputShapes: ["x": x.shape]))
        XCTAssertEqual(loaded.dims, ["in": 40, "out": 24])
        let layer = try XCTUnwrap(loaded.layers["proj"])
        XCTAssertEqual(layer.quantizedWeight, try QuantizedTensor.quantize(w, quantType: .fp4, blockSize: 32, doubleQuant: false, name: "proj.weight"))
        XCTAssertEqual(layer.bias, b)
        let y = try loaded.graph.compile(CompileOptions(threads: 1)).run(["x": x])["y"]!
        assertBitIdentical(y.scalars, try layer.forward(x).scalars, "graph vs layer forward")
    }

    func testInputsWithoutBatchDimsAndFixedDims() throws {
        let def = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "y"}"#, inputs: #"[{"name": "x", "shape": [3, "hidden"]}]"#),
                            dims: ["hidden": 7])
        let loaded = try def.load(weights: nil)
        XCTAssertEqual(loaded.inputs[0].shape, [3, 7])
    }

    func testRepeatExpandsNamesCarriedValuesAndPaths() throws {
        let json = mlp(#"""
            {"repeat": {"count": "layers", "index": "k", "start": 2, "input": "x", "output": "y", "ops": [
              {"op": "linear", "module": "m.{k}", "out": "hidden", "inputs": ["$in"], "output": "l{k}"},
              {"op": "add", "inputs": ["$in", "l{k}"], "output": "$out"}]}}
            """#)
        let def = try parse(json, dims: ["layers": 2])
        XCTAssertEqual(def.ops.count, 4)
        XCTAssertEqual(def.ops[0].kind, .linear(module: "m.2", out: .named("hidden"), bias: .auto))
        XCTAssertEqual(def.ops[0].inputs, ["x"])
        XCTAssertEqual(def.ops[2].inputs, ["y@2"], "the second iteration reads the first one's $out")
        XCTAssertEqual(def.ops[3].output, "y")
        XCTAssertEqual(def.ops[3].path, "$.ops[0].repeat.ops[1] (k=3)")
        let loaded = try GraphDefinition.parse(Array(json.utf8), file: "t", dims: ["layers": 2, "hidden": 8]).load(weights: nil)
        XCTAssertEqual(Set(loaded.layers.keys), ["m.2", "m.3"])
    }

    func testMalformedJSON() {
        assertError(["test.json", "invalid JSON"]) { _ = try parse(#"{"format": "qlora-graph", "#) }
    }

    func testWrongFormatOrVersion() {
        assertError(["$.format", "qlora-graph"]) { _ = try parse(#"{"format": "onnx", "version": 1, "inputs": [], "ops": [], "outputs": []}"#) }
        assertError(["$.version", "got 2"]) { _ = try parse(#"{"format": "qlora-graph", "version": 2, "inputs": [], "ops": [], "outputs": []}"#) }
    }

    func testUnknownKeyAndUnknownOp() {
        assertError(["$.ops[0].modul", "unknown key"]) { _ = try parse(mlp(#"{"op": "linear", "modul": "a", "inputs": ["x"], "output": "y"}"#)) }
        assertError(["$.ops[0].op", "unknown op \"conv\""]) { _ = try parse(mlp(#"{"op": "conv", "inputs": ["x"], "output": "y"}"#)) }
    }

    func testUndefinedAndDuplicateValues() {
        assertError(["$.ops[1].inputs[1]", "\"z\" is not defined"]) {
            _ = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "a"}, {"op": "add", "inputs": ["a", "z"], "output": "y"}"#))
        }
        assertError(["$.ops[1].output", "already defined"]) {
            _ = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "y"}, {"op": "relu", "inputs": ["x"], "output": "y"}"#))
        }
        assertError(["$.outputs[0].value", "\"y\" is not defined"]) { _ = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "a"}"#)) }
    }

    func testWrongArityAndBadDimension() {
        assertError(["$.ops[0].inputs", "takes 2 inputs, got 1"]) { _ = try parse(mlp(#"{"op": "add", "inputs": ["x"], "output": "y"}"#)) }
        assertError(["$.inputs[0].shape[1]", "must be > 0"]) {
            _ = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "y"}"#, inputs: #"[{"name": "x", "shape": [2, 0]}]"#))
        }
        assertError(["$.inputs[0].shape[1]", "\"...\" may only be the first"]) {
            _ = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "y"}"#, inputs: #"[{"name": "x", "shape": [2, "..."]}]"#))
        }
    }

    func testUnresolvedDimensionNamesTheInput() throws {
        let def = try parse(mlp(#"{"op": "relu", "inputs": ["x"], "output": "y"}"#))
        assertError(["$.inputs[0].shape[1]", "'hidden' has no value", "--dim hidden=N"]) { _ = try def.load(weights: nil) }
    }

    func testLinearWithoutOutNeedsWeights() throws {
        let def = try parse(mlp(#"{"op": "linear", "module": "p", "inputs": ["x"], "output": "y"}"#), dims: ["hidden": 4])
        assertError(["$.ops[0].out", "without --weights"]) { _ = try def.load(weights: nil) }
    }

    func testShapeDisagreementBetweenDimAndCheckpoint() throws {
        let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("llama-mlp.json"), dims: ["hidden": 32])
        assertError(["$.ops[0].inputs[0]", "dimension 'hidden' is 32", "model.layers.0.mlp.gate_proj.weight [128, 64]", "gives 64"]) {
            _ = try def.load(weights: CheckpointWeights(url: Self.bnbModel))
        }
    }

    func testShapeDisagreementBetweenInputAndCheckpoint() throws {
        let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("llama-mlp.json"))
        assertError(["$.ops[0].inputs[0]", "input 'x' of shape [3, 48]", "gives 64"]) {
            _ = try def.load(weights: CheckpointWeights(url: Self.bnbModel), options: GraphLoadOptions(inputShapes: ["x": [3, 48]]))
        }
    }

    func testShapeDisagreementBetweenOps() throws {
        // gate_proj's output (intermediate = 128) fed to a linear whose weight takes 64 inputs.
        let def = try parse(mlp(#"""
            {"op": "linear", "module": "model.layers.0.mlp.gate_proj", "inputs": ["x"], "output": "g"},
            {"op": "linear", "module": "model.layers.0.mlp.up_proj", "inputs": ["g"], "output": "y"}
            """#))
        assertError(["$.ops[1].inputs[0]", "up_proj.weight [128, 64]", "says 128", "gives 64"]) {
            _ = try def.load(weights: CheckpointWeights(url: Self.bnbModel))
        }
    }

    /// A valid graph and a valid checkpoint that do not fit together are not "malformed".
    func testMismatchesAreNotMalformedFiles() throws {
        let stack = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("llama-mlp-stack.json"), dims: ["layers": 2])
        do {
            _ = try stack.load(weights: CheckpointWeights(url: Self.bnbModel))
            XCTFail("expected a missing tensor")
        } catch let QLoraError.missingTensor(file, name, neededBy, suggestions) {
            XCTAssertEqual(file, Self.bnbModel.path)
            XCTAssertEqual(name, "model.layers.1.post_attention_layernorm.weight")
            XCTAssert(neededBy.hasPrefix("$.ops[0].repeat.ops[0] (i=1) of "), neededBy)
            XCTAssertEqual(suggestions, ["model.layers.0.post_attention_layernorm.weight"])
        }
        let mlp = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("llama-mlp.json"), dims: ["hidden": 32])
        do {
            _ = try mlp.load(weights: CheckpointWeights(url: Self.bnbModel))
            XCTFail("expected a shape disagreement")
        } catch let QLoraError.graphMismatch(graph, field, reason) {
            XCTAssert(graph.hasSuffix("Graphs/llama-mlp.json"), graph)
            XCTAssertEqual(field, "$.ops[0].inputs[0]")
            XCTAssert(reason.contains("dimension 'hidden' is 32"), reason)
        }
    }

    func testNearNames() {
        let names = ["model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight", "lm_head.weight"]
        XCTAssertEqual(NameSuggestions.near("model.layers.1.mlp.up_proj.weight", in: names), ["model.layers.0.mlp.up_proj.weight"])
        XCTAssertEqual(NameSuggestions.near("proj.weight", in: names), ["model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight"])
        XCTAssertEqual(NameSuggestions.near("vision.encoder.weight", in: names), [])
        XCTAssertEqual(NameSuggestions.distance(Array("kitten".utf8), Array("sitting".utf8), cap: 5), 3)
        XCTAssertEqual(NameSuggestions.distance(Array("".utf8), Array("ab".utf8), cap: 5), 2)
    }

    func testMissingTensorNamesItAndTheOp() throws {
        let def = try GraphDefinition.load(url: Self.graphs.appendingPathComponent("quantized-linear.json"))
        assertError(["model.safetensors", "proj.weight", "no such tensor", "$.ops[0]"]) {
            _ = try def.load(weights: CheckpointWeights(url: Self.bnbModel))
        }
    }

    func testMissingGraphFile() {
        assertError(["/nonexistent/g.json", "no such file"]) { _ = try GraphDefinition.load(url: URL(fileURLWithPath: "/nonexistent/g.json")) }
    }

    func testRepeatErrors() {
        let body = #"[{"op": "relu", "inputs": ["$in"], "output": "$out"}]"#
        assertError(["$.ops[0].repeat.count", "\"layers\" has no value"]) {
            _ = try parse(mlp(#"{"repeat": {"count": "layers", "input": "x", "output": "y", "ops": \#(body)}}"#))
        }
        assertError(["$.ops[0].repeat.ops[0].output", "must write \"$out\""]) {
            _ = try parse(mlp(#"{"repeat": {"count": 2, "input": "x", "output": "y", "ops": [{"op": "relu", "inputs": ["$in"], "output": "r"}]}}"#))
        }
    }

    func testUnusedAdapterModulesBecomeNotes() throws {
        let def = try parse(mlp(#"{"op": "linear", "module": "model.layers.0.mlp.gate_proj", "inputs": ["x"], "output": "y"}"#))
        let adapter = try LoraAdapter(directory: Self.interop.appendingPathComponent("adapter"))
        let loaded = try def.load(weights: CheckpointWeights(url: Self.bnbModel), options: GraphLoadOptions(adapter: adapter))
        XCTAssertEqual(loaded.notes.count, 2)
        XCTAssert(loaded.notes.allSatisfy { $0.contains("does not use") })
        XCTAssert(loaded.notes.contains { $0.contains("model.layers.0.mlp.up_proj") })
    }
}
