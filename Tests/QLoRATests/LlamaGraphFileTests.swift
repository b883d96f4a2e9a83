import Foundation
import XCTest
@testable import QLoRA

/// Graphs/llama.json loaded over whole models (`--model`): the same logits as `LlamaModel` (bitwise)
/// and as transformers; float checkpoints quantized at load, sharded directories, the CLI
/// (`qlora run Graphs/llama.json --model ...` with I64 input ids) and its errors.
final class LlamaGraphFileTests: XCTestCase {
    static let graph = Reference.projectRoot.appendingPathComponent("Graphs/llama.json")
    static let causal = "interop/causal_lm"

    func inputIds() throws -> IntTensor { try LlamaReferenceTests.inputIds() }

    func graphLogits(_ model: LlamaCheckpoint, adapter: LoraAdapter? = nil, ids: IntTensor) throws -> [Float] {
        let def = try GraphDefinition.load(url: Self.graph, dims: model.graphDims)
        let loaded = try def.load(weights: model, options: GraphLoadOptions(inputShapes: ["input_ids": ids.shape], adapter: adapter))
        return try loaded.graph.compile().run([:], ids: ["input_ids": ids])["logits"]!.scalars
    }

    func testGraphFileEqualsLlamaModelAndTransformers() throws {
        let ids = try inputIds()
        let url = Reference.url("interop/model_bnb4bit")
        for adapter in [nil, try LoraAdapter(directory: Reference.url("interop/adapter"))] {
            let fromFile = try graphLogits(LlamaCheckpoint(url: url), adapter: adapter, ids: ids)
            let fromModel = try LlamaModel.load(url, adapter: adapter).logits(ids).scalars
            assertBitIdentical(fromFile, fromModel, "Graphs/llama.json vs LlamaModel")
            assertClose(fromFile, try Reference.floats("\(Self.causal)/logits_\(adapter == nil ? "base" : "lora").f32"), relative: 1e-5, "graph file logits")
        }
    }

    /// What `qlora train --model --loss causal-lm` needs: Graphs/llama.json's logits, the causal-LM
    /// loss over the input ids and a backward pass into the adapter's layers give PEFT's gradients.
    func testGraphFileTrainsLikePEFT() throws {
        let ids = try inputIds()
        let model = try LlamaCheckpoint(url: Reference.url("interop/model_bnb4bit"))
        let adapter = try LoraAdapter(directory: Reference.url("interop/adapter"))
        let def = try GraphDefinition.load(url: Self.graph, dims: model.graphDims)
        let loaded = try def.load(weights: model, options: GraphLoadOptions(inputShapes: ["input_ids": ids.shape], adapter: adapter))
        let g = loaded.graph
        let loss = try g.causalLMLoss(g.output(named: "logits")!, labels: g.input(named: "input_ids")!)
        g.output("loss", loss)
        // PEFT's order: layer by layer, module order (gate, up, down), A then B.
        let modules = ["gate_proj", "up_proj", "down_proj"].map { "model.layers.0.mlp.\($0)" }
        let store = try ParameterStore(gathering: modules.flatMap { loaded.layers[$0]!.trainableParameters })
        try g.backward(from: loss, parameters: store)
        let value = try g.compile().run([:], ids: ["input_ids": ids])["loss"]!.scalars[0]
        let ref = try Reference.floats("\(Self.causal)/loss_lora.f32")[0]
        XCTAssertEqual(value, ref, accuracy: 1e-6 * ref)
        let grads = try SafeTensorsFile(url: Reference.url("\(Self.causal)/grads_lora.safetensors"))
        for (p, grad) in zip(store.parameters, store.gradients) {
            assertClose(grad.tensor.scalars, try grads.tensor("base_model.model.\(p.name).weight").scalars, relative: 1e-4, "gradient of \(p.name)")
        }
    }

    /// model_fp32 holds the float weights bitsandbytes quantized into model_bnb4bit: NF4 at load
    /// (bit-exact quantizer) gives transformers' logits on the canonical dequantized weights.
    func testFloatCheckpointQuantizedAtLoadAndShardedDirectory() throws {
        let ids = try inputIds()
        let single = try LlamaModel.load(Reference.url("interop/model_fp32")).logits(ids).scalars
        assertClose(single, try Reference.floats("\(Self.causal)/logits_base.f32"), relative: 1e-5, "fp32 model quantized at load")
        // The same tensors split over two shards with an index.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llama-shards-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Reference.url("interop/model_fp32/config.json"), to: dir.appendingPathComponent("config.json"))
        let file = try SafeTensorsFile(url: Reference.url("interop/model_fp32/model.safetensors"))
        var map: [String] = []
        for (k, names) in [file.names.filter { $0.contains("mlp") }, file.names.filter { !$0.contains("mlp") }].enumerated() {
            let shard = "model-0000\(k + 1)-of-00002.safetensors"
            let w = try SafeTensorsWriter(url: dir.appendingPathComponent(shard))
            for n in names {
                let info = try file.info(n)
                try w.add(n, dtype: info.dtype, shape: info.shape, data: file.rawData(n))
                map.append("\"\(n)\": \"\(shard)\"")
            }
            _ = try w.commit()
        }
        try Data("{\"metadata\": {}, \"weight_map\": {\(map.joined(separator: ", "))}}".utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        assertBitIdentical(try LlamaModel.load(dir).logits(ids).scalars, single, "sharded vs single file")
        // A weight_map entry naming a shard without the tensor is reported.
        try Data("{\"weight_map\": {\"lm_head.weight\": \"model-00001-of-00002.safetensors\"}}".utf8).write(to: dir.appendingPathComponent("model.safetensors.index.json"))
        XCTAssertThrowsError(try LlamaCheckpoint(url: dir)) { e in XCTAssert("\(e)".contains("weight_map.lm_head.weight"), "\(e)") }
    }

    func writeIds(_ ids: IntTensor, to url: URL) throws {
        let w = try SafeTensorsWriter(url: url, metadata: ["format": "pt"])
        var raw = ids.scalars.map { Int64($0).littleEndian }
        try raw.withUnsafeMutableBytes { try w.add("input_ids", dtype: .i64, shape: ids.shape, bytes: UnsafeRawBufferPointer($0)) }
        _ = try w.commit()
    }

    func testRunCommandWithModelAndAdapter() throws {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("llama-run-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let ids = tmp.appendingPathComponent("ids.safetensors"), out = tmp.appendingPathComponent("out.safetensors")
        try writeIds(try inputIds(), to: ids)
        let r = try CLIRunner.run(["run", Self.graph.path, "--model", Reference.url("interop/model_bnb4bit").path,
                                   "--adapter", Reference.url("interop/adapter").path, "--input", ids.path, "--output", out.path, "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let logits = try SafeTensorsFile(url: out).tensor("logits")
        XCTAssertEqual(logits.shape, [2, 7, 16])
        assertClose(logits.scalars, try Reference.floats("\(Self.causal)/logits_lora.f32"), relative: 1e-5, "qlora run --model --adapter")

        try CLIRunner.assertUserError(["run", Self.graph.path, "--model", Reference.url("interop/model_bnb4bit").path,
                                       "--weights", Reference.url("interop/model_bnb4bit/model.safetensors").path,
                                       "--input", ids.path, "--output", out.path], ["--weights and --model"])
        try CLIRunner.assertUserError(["run", Self.graph.path, "--weights", Reference.url("interop/model_bnb4bit/model.safetensors").path,
                                       "--dim", "layers=1", "--dim", "heads=4", "--dim", "kv_heads=2", "--dim", "head_dim=16",
                                       "--input", ids.path, "--output", out.path], ["rms_norm_eps", "--model"])
        try CLIRunner.assertUserError(["run", Self.graph.path, "--model", tmp.path, "--input", ids.path, "--output", out.path], ["config.json"])
    }

    /// SmolLM2's GGUF through the CLI: quantized to NF4 at load, last-position logits as transformers.
    func testRunCommandOnSmolLM2GGUF() throws {
        let gguf = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: gguf.path) else {
            throw XCTSkip("\(gguf.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        let outputs = try JSONValue.parse(Reference.bytes("smollm2/nf4/outputs.json"), file: "outputs.json", field: "$")
        guard case let .array(prompts)? = outputs["prompts"], case let .array(idValues)? = prompts[2]["input_ids"],
              case let .string(logitsFile)? = prompts[2]["last_logits_file"] else { return XCTFail("nf4/outputs.json") }
        let tokens = idValues.compactMap(\.doubleValue).map { Int32($0) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("llama-gguf-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let ids = tmp.appendingPathComponent("ids.safetensors"), out = tmp.appendingPathComponent("out.safetensors")
        try writeIds(try IntTensor(shape: [1, tokens.count], scalars: tokens), to: ids)
        let r = try CLIRunner.run(["run", Self.graph.path, "--model", gguf.path, "--input", ids.path, "--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let logits = try SafeTensorsFile(url: out).tensor("logits")
        XCTAssertEqual(logits.shape, [1, tokens.count, 49152])
        assertClose(Array(logits.scalars[((tokens.count - 1) * 49152)...]), try Reference.floats("smollm2/\(logitsFile)"), relative: 1e-4, "CLI SmolLM2 last logits")
    }
}
