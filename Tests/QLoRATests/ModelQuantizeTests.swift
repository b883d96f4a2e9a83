import Foundation
import XCTest
@testable import QLoRA

/// `qlora quantize MODEL -o DIR` (LlamaBnbExport): the directory transformers + bitsandbytes load.
/// SmolLM2 (GGUF) against ../shared/reference/smollm2 (bitsandbytes' NF4 conversion of the same
/// GGUF: per-tensor sha256 of the codes, 8-bit absmax and nested absmax, the offsets; transformers'
/// tokenizer.json) and the conventions of the bitsandbytes-saved ../shared/reference/interop/
/// model_bnb4bit; a small f16 Hugging Face directory written here; bad inputs.
/// (Tests/Fixtures/quantize/check_transformers_load.py loaded the SmolLM2 output with transformers
/// once: transformers_load_result.json, docs/quantize.md.)
final class ModelQuantizeTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("model-quantize-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    static func sha(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { SHA256.hex($0) } }

    func json(_ url: URL) throws -> JSONValue { try JSONValue.parse([UInt8](Data(contentsOf: url)), file: url.path, field: "$") }

    /// The suffix → dtype map of every 4-bit parameter of a bitsandbytes file (one entry if all agree).
    static func conventions(_ c: BnbCheckpoint) throws -> Set<String> {
        var out = Set<String>()
        for p in c.quantizedNames {
            let own = c.file.names.filter { $0 == p || $0.hasPrefix(p + ".") }
            let entries = try own.map { n -> String in
                let info = try c.file.info(n)
                let suffix = n == p ? "<weight>" : String(n.dropFirst(p.count + 1))
                return "\(suffix):\(info.dtype.rawValue):rank\(info.shape.count)" + (n == p ? ":\(info.shape.last!)" : "")
            }.sorted()
            out.insert(entries.joined(separator: ","))
        }
        return out
    }

    func testSmolLM2GGUFExportMatchesBitsandbytesConversion() throws {
        let gguf = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: gguf.path) else {
            throw XCTSkip("\(gguf.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        let out = scratch.appendingPathComponent("smollm2-nf4")
        let summary = try LlamaBnbExport.export(model: gguf, output: out, options: QuantizeOptions())
        XCTAssertEqual(summary.tensorsConverted, 210)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: out.path)),
                       ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["smollm2-nf4"], "no staging left behind")

        // Every 4-bit weight equals bitsandbytes' NF4 conversion of the same GGUF, bit for bit.
        let written = try BnbCheckpoint(url: out.appendingPathComponent("model.safetensors"))
        let reference = try json(Reference.url("smollm2/nf4/tensor_sha256.json"))
        guard case let .object(tensors)? = reference["tensors"] else { return XCTFail("tensor_sha256.json: tensors") }
        XCTAssertEqual(tensors.count, 210)
        XCTAssertEqual(Set(written.quantizedNames), Set(tensors.map(\.key)))
        for (name, ref) in tensors {
            guard case let .string(packed)? = ref["sha256_packed"], case let .string(qabsmax)? = ref["sha256_qabsmax"],
                  case let .string(absmax2)? = ref["sha256_absmax2_f32"], case let .string(offsetHex)? = ref["offset_hex"] else {
                return XCTFail("\(name): reference fields")
            }
            XCTAssertEqual(Self.sha(try written.file.bytes(name)), packed, "\(name): packed codes")
            XCTAssertEqual(Self.sha(try written.file.bytes(name + ".absmax")), qabsmax, "\(name): 8-bit absmax")
            XCTAssertEqual(Self.sha(try written.file.bytes(name + ".nested_absmax")), absmax2, "\(name): nested absmax")
            let state = try written.quantState(name)
            XCTAssertEqual(state.nested.map { String($0.offset.bitPattern, radix: 16) }, offsetHex, "\(name): offset")
            XCTAssertEqual(state.dtype, "float32")
            XCTAssertEqual(state.blockSize, 64)
        }

        // The layout conventions of the file bitsandbytes + transformers saved.
        let bnb = try BnbCheckpoint(url: Reference.url("interop/model_bnb4bit/model.safetensors"))
        XCTAssertEqual(try Self.conventions(written), try Self.conventions(bnb))
        XCTAssertEqual(try Self.conventions(written).count, 1)
        XCTAssertEqual(written.file.metadata, bnb.file.metadata)
        XCTAssertEqual(written.plainNames.sorted(), (["model.embed_tokens.weight", "model.norm.weight"]
            + (0..<30).flatMap { ["model.layers.\($0).input_layernorm.weight", "model.layers.\($0).post_attention_layernorm.weight"] }).sorted(),
            "tied lm_head is not saved, as transformers drops tied weights")
        for n in written.plainNames { XCTAssertEqual(try written.file.info(n).dtype, .f32, n) }
        // The embedding is transformers' float32 dequantization of the Q8_0 token_embd (reference rows 0..<64).
        XCTAssertEqual(Array(try written.file.floats("model.embed_tokens.weight").prefix(64 * 576)),
                       try Reference.floats("smollm2/dequant/token_embd.weight.rows_0_64.f32"))

        // config.json: the model's fields + exactly transformers' quantization_config.
        let config = try json(out.appendingPathComponent("config.json"))
        let bnbConfig = try json(Reference.url("interop/model_bnb4bit/config.json"))
        XCTAssertEqual(config["quantization_config"], bnbConfig["quantization_config"])
        XCTAssertEqual(config.keys, config.keys.sorted())
        XCTAssertEqual(try LlamaConfig.load(configJSON: out.appendingPathComponent("config.json")), try LlamaConfig.parse(gguf: GGUFFile(url: gguf)))
        XCTAssertEqual(config["max_position_embeddings"], .int(8192))
        XCTAssertEqual(config["pad_token_id"], .int(2))
        XCTAssertEqual(config["tie_word_embeddings"], .bool(true))
        XCTAssertEqual(config["rms_norm_eps"]?.doubleValue, Double(Float(1e-5)), "the GGUF's float32 epsilon, as transformers reads it")

        // tokenizer.json: what transformers builds from the GGUF's metadata and saves.
        XCTAssertEqual(try json(out.appendingPathComponent("tokenizer.json")).sortedKeys(),
                       try json(Reference.url("smollm2/tokenizer/tokenizer.json")).sortedKeys())
        let tokenizerConfig = try json(out.appendingPathComponent("tokenizer_config.json"))
        let refTokenizerConfig = try json(Reference.url("smollm2/tokenizer/tokenizer_config.json"))
        for key in ["bos_token", "eos_token", "pad_token", "unk_token", "chat_template", "tokenizer_class"] {
            XCTAssertEqual(tokenizerConfig[key], refTokenizerConfig[key], key)
        }

        // Loading the written directory gives the model the GGUF gives, bit for bit.
        let ids: [Int32] = [1, 9690, 198, 2683, 359, 253, 5356, 11173, 30, 2, 198, 1, 4093, 198, 1780]
        let input = try IntTensor(shape: [1, ids.count], scalars: ids)
        let fromGGUF = try LlamaModel.load(gguf).logits(input)
        let fromDirectory = try LlamaModel.load(out).logits(input)
        assertBitIdentical(fromDirectory.scalars, fromGGUF.scalars, "logits of the written directory vs the GGUF")
    }

    /// A tiny f16 Hugging Face directory (biases, untied lm_head, tokenizer + generation config).
    func makeF16Model(_ dir: URL) throws -> LlamaConfig {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let configText = """
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "rms_norm_eps": 1e-05,
             "rope_theta": 10000.0, "tie_word_embeddings": false, "attention_bias": true, "mlp_bias": false,
             "torch_dtype": "float16", "bos_token_id": 1, "eos_token_id": 2, "custom_field": "kept"}
            """
        try Data(configText.utf8).write(to: dir.appendingPathComponent("config.json"))
        try Data("{\"bos_token_id\": 1, \"eos_token_id\": 2}\n".utf8).write(to: dir.appendingPathComponent("generation_config.json"))
        try Data("{\"version\": \"1.0\", \"model\": {}}".utf8).write(to: dir.appendingPathComponent("tokenizer.json"))
        let config = try LlamaConfig.load(configJSON: dir.appendingPathComponent("config.json"))
        let writer = try SafeTensorsWriter(url: dir.appendingPathComponent("model.safetensors"))
        var rng = SeededRandom(seed: 11)
        for t in LlamaBnbExport.tensorNames(config) {
            let n = t.shape.reduce(1, *)
            let values = t.name.hasSuffix("norm.weight") ? (0..<n).map { _ in 1 + rng.float(0.1) } : rng.floats(n, scale: 0.2)
            try writer.add(t.name, dtype: .f16, shape: t.shape, data: AdapterMerge.encode(values) { Float16($0).bitPattern })
        }
        try writer.commit()
        return config
    }

    func testF16DirectoryExportKeepsDTypesAndQuantizesLikeTheLoader() throws {
        let source = scratch.appendingPathComponent("f16"), out = scratch.appendingPathComponent("f16-fp4")
        let config = try makeF16Model(source)
        var options = QuantizeOptions()
        options.quantType = .fp4
        options.blockSize = 128
        options.doubleQuant = false
        try LlamaBnbExport.export(model: source, output: out, options: options, computeDType: "bfloat16")
        for name in ["generation_config.json", "tokenizer.json"] {
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent(name)), try Data(contentsOf: source.appendingPathComponent(name)), name)
        }
        let src = try SafeTensorsFile(url: source.appendingPathComponent("model.safetensors"))
        let written = try BnbCheckpoint(url: out.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(written.quantizedNames.count, 14)
        for t in LlamaBnbExport.tensorNames(config) {
            if t.quantized {
                let expected = try QuantizedTensor.quantize(src.tensor(t.name), quantType: .fp4, blockSize: 128, doubleQuant: false, name: t.name)
                XCTAssertEqual(try written.quantized(t.name), expected, t.name)
                XCTAssertEqual(try written.quantState(t.name).dtype, "float16")
                XCTAssertNil(try written.quantState(t.name).nested)
            } else {
                XCTAssertEqual(try written.file.info(t.name).dtype, .f16, t.name)
                XCTAssertEqual(try written.file.rawData(t.name), try src.rawData(t.name), t.name)
            }
        }
        XCTAssertEqual(written.plainNames.filter { $0.hasSuffix(".bias") }.count, 8, "q/k/v/o biases of 2 layers")
        let c = try json(out.appendingPathComponent("config.json"))
        XCTAssertEqual(c["custom_field"], .string("kept"))
        XCTAssertEqual(c["torch_dtype"], .string("float16"))
        XCTAssertEqual(c["quantization_config"]?["bnb_4bit_quant_type"], .string("fp4"))
        XCTAssertEqual(c["quantization_config"]?["bnb_4bit_use_double_quant"], .bool(false))
        XCTAssertEqual(c["quantization_config"]?["bnb_4bit_compute_dtype"], .string("bfloat16"))

        // The written directory loads to the same model as the f16 source quantized at load.
        let input = try IntTensor(shape: [1, 5], scalars: [1, 7, 30, 2, 39])
        let a = try LlamaModel.load(source, quantization: options).logits(input)
        let b = try LlamaModel.load(out).logits(input)
        assertBitIdentical(b.scalars, a.scalars, "logits")

        // Re-exporting a bitsandbytes directory keeps its 4-bit weights as stored; --force replaces.
        let again = scratch.appendingPathComponent("again")
        try LlamaBnbExport.export(model: out, output: again, options: QuantizeOptions())
        XCTAssertEqual(try Data(contentsOf: again.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: out.appendingPathComponent("model.safetensors")))
        XCTAssertThrowsError(try LlamaBnbExport.export(model: out, output: again, options: QuantizeOptions())) {
            XCTAssert("\($0)".contains("already exists"), "\($0)")
        }
        try LlamaBnbExport.export(model: source, output: again, options: QuantizeOptions(), replace: true)
        XCTAssertEqual(try BnbCheckpoint(url: again.appendingPathComponent("model.safetensors")).quantState("model.layers.0.mlp.up_proj.weight").quantType, .nf4)
    }

    func testBadModelsAreErrorsAndLeaveNothingBehind() throws {
        let source = scratch.appendingPathComponent("m")
        _ = try makeF16Model(source)
        func expectError(_ out: String, _ fragments: [String], compute: String = "float32", file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try LlamaBnbExport.export(model: source, output: scratch.appendingPathComponent(out), options: QuantizeOptions(),
                                                           computeDType: compute), file: file, line: line) { error in
                XCTAssert(error is QLoraError, "\(error)", file: file, line: line)
                for f in fragments { XCTAssert("\(error)".contains(f), "'\(error)' does not mention \(f)", file: file, line: line) }
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent(out).path), file: file, line: line)
        }
        expectError("o1", ["compute dtype", "float64"], compute: "float64")
        // A missing projection: named, with the file.
        let full = try SafeTensorsFile(url: source.appendingPathComponent("model.safetensors"))
        let writer = try SafeTensorsWriter(url: source.appendingPathComponent("model.safetensors"))
        for n in full.names where n != "model.layers.1.mlp.down_proj.weight" {
            let info = try full.info(n)
            try writer.add(n, dtype: info.dtype, shape: info.shape, data: Data(try full.rawData(n)))
        }
        try writer.commit()
        expectError("o2", ["model.layers.1.mlp.down_proj.weight"])
        // Another architecture.
        try Data("{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\"}".utf8).write(to: source.appendingPathComponent("config.json"))
        expectError("o3", ["MistralForCausalLM"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), ["m"], "no staging directory left behind")
        XCTAssertThrowsError(try LlamaBnbExport.export(model: scratch.appendingPathComponent("none"), output: scratch.appendingPathComponent("o4"),
                                                       options: QuantizeOptions())) { XCTAssert("\($0)".contains("no such file"), "\($0)") }
    }

    func testSynthIsDeterministicLoadableAndInTheBnbLayout() throws {
        let configURL = scratch.appendingPathComponent("tiny.json")
        try Data("""
            {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
             "rms_norm_eps": 1e-05, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
            """.utf8).write(to: configURL)
        let a = scratch.appendingPathComponent("a"), b = scratch.appendingPathComponent("b"), c = scratch.appendingPathComponent("c")
        try LlamaSynth.write(config: configURL, output: a, seed: 5, options: QuantizeOptions())
        try LlamaSynth.write(config: configURL, output: b, seed: 5, options: QuantizeOptions())
        try LlamaSynth.write(config: configURL, output: c, seed: 6, options: QuantizeOptions())
        let bytes = { (d: URL) in try Data(contentsOf: d.appendingPathComponent("model.safetensors")) }
        XCTAssertEqual(try bytes(a), try bytes(b), "same seed, same bytes")
        XCTAssertNotEqual(try bytes(a), try bytes(c))

        let written = try BnbCheckpoint(url: a.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(written.quantizedNames.count, 14)
        let bnb = try BnbCheckpoint(url: Reference.url("interop/model_bnb4bit/model.safetensors"))
        XCTAssertEqual(try ModelQuantizeTests.conventions(written), try ModelQuantizeTests.conventions(bnb))
        for n in written.plainNames { XCTAssertEqual(try written.file.info(n).dtype, .bf16, n) }
        XCTAssertEqual(try written.file.floats("model.norm.weight"), [Float](repeating: 1, count: 64))
        let w = try written.quantized("model.layers.0.mlp.up_proj.weight").dequantize()
        let std = (w.scalars.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssert(std > 0.01 && std < 0.05, "weights have about initializer_range's spread, got std \(std)")

        let model = try LlamaModel.load(a)
        XCTAssertEqual(model.config, try LlamaConfig.load(configJSON: configURL))
        let input = try IntTensor(shape: [1, 4], scalars: [1, 2, 3, 49])
        let l1 = try model.logits(input), l2 = try LlamaModel.load(b).logits(input)
        XCTAssert(l1.scalars.allSatisfy(\.isFinite))
        assertBitIdentical(l1.scalars, l2.scalars, "same seed, same logits")

        try Data("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64, \"num_attention_heads\": 4}".utf8).write(to: configURL)
        XCTAssertThrowsError(try LlamaSynth.write(config: configURL, output: scratch.appendingPathComponent("d"), seed: 0, options: QuantizeOptions())) {
            XCTAssert("\($0)".contains("intermediate_size"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("d").path))
    }

    func testCLIQuantizeModelAndSynth() throws {
        let source = scratch.appendingPathComponent("m"), out = scratch.appendingPathComponent("q")
        _ = try makeF16Model(source)
        let r = try CLIRunner.run(["quantize", source.path, "-o", out.path, "--quant-type", "fp4", "--no-double-quant"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("quantized 14 projections"), r.stdout)
        XCTAssertEqual(try BnbCheckpoint(url: out.appendingPathComponent("model.safetensors")).quantState("model.layers.1.self_attn.o_proj.weight").quantType, .fp4)
        try CLIRunner.assertUserError(["quantize", source.path, "-o", out.path], [out.path, "already exists", "--force"])
        try CLIRunner.assertUserError(["quantize", source.path, "-o", scratch.appendingPathComponent("x").path, "--include", "q_proj"], ["--include"])
        let synth = scratch.appendingPathComponent("s")
        try CLIRunner.assertUserError(["synth", "--config", source.appendingPathComponent("nope.json").path, "-o", synth.path], ["nope.json"])
        let s = try CLIRunner.run(["synth", "--config", source.appendingPathComponent("config.json").path, "-o", synth.path, "--seed", "9"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertEqual(try LlamaCheckpoint(url: synth).config.layers, 2)
    }
}
