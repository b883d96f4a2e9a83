import Foundation
import XCTest
@testable import QLoRA

final class CheckpointTests: XCTestCase {
    static let bnbPath = "interop/model_bnb4bit/model.safetensors"
    static let fp32Path = "interop/model_fp32/model.safetensors"

    /// Layer name → manifest entry of interop/manifest.json.
    func layers() throws -> [String: [String: Any]] {
        try Reference.manifest("interop/manifest.json")["layers"] as! [String: [String: Any]]
    }

    func testReadsBitsandbytesCheckpointAndDequantizesBitExactly() throws {
        let checkpoint = try BnbCheckpoint(url: Reference.url(Self.bnbPath))
        let layers = try layers()
        XCTAssertEqual(checkpoint.quantizedNames, layers.keys.sorted().map { $0 + ".weight" })
        XCTAssertEqual(checkpoint.plainNames, ["lm_head.weight", "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                                               "model.layers.0.mlp.down_proj.bias", "model.layers.0.mlp.gate_proj.bias",
                                               "model.layers.0.mlp.up_proj.bias", "model.layers.0.post_attention_layernorm.weight",
                                               "model.norm.weight"])
        for (layer, entry) in layers {
            let state = try checkpoint.quantState(layer + ".weight")
            XCTAssertEqual(state.shape, entry["shape"] as? [Int])
            XCTAssertEqual(state.quantType, .nf4)
            XCTAssertEqual(state.blockSize, 64)
            let hex = entry["nested_offset_hex"] as! String
            XCTAssertEqual(state.nested?.offset.bitPattern, UInt32(hex, radix: 16), "\(layer) offset bits")
            let w = try checkpoint.tensor(layer + ".weight", threads: 1)
            XCTAssertEqual(w.shape, state.shape)
            assertBitIdentical(w.scalars, try Reference.floats("interop/expected/\(layer).W_dequant.f32"), "\(layer) W_dequant")
        }
    }

    /// Parsing bitsandbytes' JSON and printing it again gives the same bytes (python json.dumps).
    func testQuantStateJSONIsByteIdenticalToBitsandbytes() throws {
        let file = try SafeTensorsFile(url: Reference.url(Self.bnbPath))
        for (layer, entry) in try layers() {
            let key = layer + ".weight.quant_state.bitsandbytes__nf4"
            let bytes = try file.bytes(key)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), entry["quant_state_json"] as? String)
            let state = try BnbQuantState.parse(bytes, expectedType: .nf4, file: "f", field: key)
            XCTAssertEqual(state.json, String(decoding: bytes, as: UTF8.self))
        }
        let plain = BnbQuantState(quantType: .fp4, blockSize: 128, dtype: "bfloat16", shape: [3, 5], nested: nil)
        XCTAssertEqual(plain.json, "{\"quant_type\": \"fp4\", \"blocksize\": 128, \"dtype\": \"bfloat16\", \"shape\": [3, 5]}")
    }

    /// The written file does not depend on the thread count.
    func testQuantizedFileIsIdenticalForOneAndTwoThreads() throws {
        let dir = try makeTempDirectory(self)
        var files: [Data] = []
        for threads in [1, 2] {
            var options = QuantizeOptions()
            options.threads = threads
            options.quantType = .fp4
            options.include = "proj"
            let out = dir.appendingPathComponent("q\(threads).safetensors")
            _ = try CheckpointConversion.quantize(input: Reference.url(Self.fp32Path), output: out, options: options)
            files.append(try Data(contentsOf: out))
        }
        XCTAssert(files[0] == files[1])
    }

    func testPythonFloatRepr() {
        let cases: [(Double, String)] = [
            (0.1, "0.1"), (0.33627980947494507, "0.33627980947494507"), (16, "16.0"), (-2.5, "-2.5"),
            (1e-4, "0.0001"), (1e-5, "1e-05"), (1.5e-7, "1.5e-07"), (1e15, "1000000000000000.0"), (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"), (Double.leastNonzeroMagnitude, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0, "0.0"), (-0.0, "-0.0"), (123456789.125, "123456789.125"), (Double(Float(0.1)), "0.10000000149011612"),
            (.nan, "NaN"), (.infinity, "Infinity"), (-.infinity, "-Infinity"),
        ]
        for (value, text) in cases { XCTAssertEqual(pythonFloatRepr(value), text, "\(value)") }
    }

    /// Acceptance: quantizing the original f32 model with the defaults reproduces the checkpoint
    /// transformers + bitsandbytes wrote byte for byte: every tensor, including each quant-state
    /// JSON (nested_offset is torch's float32 mean of the absmax) and the file metadata.
    func testQuantizeReproducesBitsandbytesCheckpoint() throws {
        let dir = try makeTempDirectory(self)
        let out = dir.appendingPathComponent("q.safetensors")
        var options = QuantizeOptions()
        options.threads = 1
        let summary = try CheckpointConversion.quantize(input: Reference.url(Self.fp32Path), output: out, options: options)
        XCTAssertEqual(summary.tensorsConverted, 7)
        XCTAssertEqual(summary.tensorsCopied, 8)
        let mine = try SafeTensorsFile(url: out), theirs = try SafeTensorsFile(url: Reference.url(Self.bnbPath))
        XCTAssertEqual(mine.names, theirs.names)
        XCTAssertEqual(mine.metadata, theirs.metadata)
        for name in theirs.names {
            let a = try mine.info(name), b = try theirs.info(name)
            XCTAssertEqual(a.dtype, b.dtype, name)
            XCTAssertEqual(a.shape, b.shape, name)
            XCTAssert(try mine.rawData(name) == theirs.rawData(name), "\(name) differs")
        }
        // The offsets, against the manifest's nested_offset_hex of every layer.
        let ours = try BnbCheckpoint(file: mine)
        let layers = try layers()
        XCTAssertEqual(ours.quantizedNames.count, layers.count)
        for (layer, entry) in layers {
            let offset = try XCTUnwrap(try ours.quantState(layer + ".weight").nested?.offset, layer)
            XCTAssertEqual(String(format: "%08x", offset.bitPattern), entry["nested_offset_hex"] as? String, layer)
        }
    }

    /// The nested (8-bit dynamic) quant map must be bnb's create_dynamic_map bit for bit.
    func testQuantizeNestedQuantMapMatchesBitsandbytes() throws {
        let dir = try makeTempDirectory(self)
        let out = dir.appendingPathComponent("q.safetensors")
        _ = try CheckpointConversion.quantize(input: Reference.url(Self.fp32Path), output: out, options: QuantizeOptions())
        let mine = try SafeTensorsFile(url: out), theirs = try SafeTensorsFile(url: Reference.url(Self.bnbPath))
        let name = "model.layers.0.mlp.up_proj.weight.nested_quant_map"
        assertBitIdentical(try mine.floats(name), try theirs.floats(name), name)
    }

    /// quantize → dequantize of the f32 model and dequantizing bitsandbytes' own file both give
    /// the canonical W_dequant bit for bit.
    func testQuantizeDequantizeRoundTrip() throws {
        let dir = try makeTempDirectory(self)
        let q = dir.appendingPathComponent("q.safetensors"), d = dir.appendingPathComponent("d.safetensors")
        let d2 = dir.appendingPathComponent("d2.safetensors")
        _ = try CheckpointConversion.quantize(input: Reference.url(Self.fp32Path), output: q, options: QuantizeOptions())
        let summary = try CheckpointConversion.dequantize(input: q, output: d)
        XCTAssertEqual(summary.tensorsConverted, 7)
        _ = try CheckpointConversion.dequantize(input: Reference.url(Self.bnbPath), output: d2, threads: 2)
        let fp32 = try SafeTensorsFile(url: Reference.url(Self.fp32Path))
        let roundTrip = try SafeTensorsFile(url: d), fromBnb = try SafeTensorsFile(url: d2)
        XCTAssertEqual(roundTrip.names, fp32.names)
        XCTAssertEqual(fromBnb.names, fp32.names)
        let layers = try layers()
        for name in fp32.names {
            XCTAssertEqual(try roundTrip.info(name).shape, try fp32.info(name).shape)
            XCTAssertEqual(try roundTrip.info(name).dtype, .f32)
            let layer = String(name.dropLast(".weight".count))
            if layers[layer] != nil {
                let expected = try Reference.floats("interop/expected/\(layer).W_dequant.f32")
                assertBitIdentical(try fromBnb.floats(name), expected, "\(name) from bnb")
                assertBitIdentical(try roundTrip.floats(name), expected, "\(name) round trip")
            } else {
                XCTAssert(try roundTrip.rawData(name) == fp32.rawData(name), "\(name) copied")
                XCTAssert(try fromBnb.rawData(name) == fp32.rawData(name), "\(name) copied")
            }
        }
    }

    /// Every layout we write reads back to the same QuantizedTensor (nf4/fp4, plain/double, odd n).
    func testWriteReadLayoutRoundTrip() throws {
        let dir = try makeTempDirectory(self)
        let url = dir.appendingPathComponent("l.safetensors")
        var rng = SeededRandom(seed: 7)
        var weights: [String: QuantizedTensor] = [:]
        for type in QuantType.allCases {
            for dq in [false, true] {
                let t = try Tensor(shape: [33, 31], scalars: rng.floats(33 * 31, scale: 2))
                weights["\(type).\(dq).weight"] = try QuantizedTensor.quantize(t, quantType: type, blockSize: 128, doubleQuant: dq)
            }
        }
        let writer = try SafeTensorsWriter(url: url, metadata: ["format": "pt"])
        for (name, w) in weights { try writer.addQuantized(name, w, dtype: "float16") }
        try writer.add("plain.bias", floats: [1, 2], shape: [2])
        try writer.commit()
        let checkpoint = try BnbCheckpoint(url: url)
        XCTAssertEqual(checkpoint.quantizedNames, weights.keys.sorted())
        XCTAssertEqual(checkpoint.plainNames, ["plain.bias"])
        for (name, w) in weights {
            XCTAssertEqual(try checkpoint.quantized(name), w, name)
            XCTAssertEqual(try checkpoint.quantState(name).dtype, "float16")
            XCTAssertEqual(try checkpoint.file.info(name).shape, [(33 * 31 + 1) / 2, 1])
        }
    }

    func testTensorSelectorDefaultsAndFilters() throws {
        func info(_ name: String, _ shape: [Int] = [4, 4], _ dtype: SafeTensorsDType = .f32) -> SafeTensorInfo {
            SafeTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: 0..<(shape.reduce(1, *) * dtype.size))
        }
        let d = try TensorSelector(include: nil, exclude: nil)
        XCTAssert(d.selects(info("model.layers.0.mlp.up_proj.weight")))
        XCTAssert(d.selects(info("x.weight", [4, 4], .bf16)))
        XCTAssertFalse(d.selects(info("model.embed_tokens.weight")))
        XCTAssertFalse(d.selects(info("lm_head.weight")))
        XCTAssertFalse(d.selects(info("model.norm.weight")))
        XCTAssertFalse(d.selects(info("model.layers.0.mlp.up_proj.bias")))
        XCTAssertFalse(d.selects(info("x.weight", [16])))
        XCTAssertFalse(d.selects(info("x.weight", [4, 4], .i32)))
        let f = try TensorSelector(include: "lm_head|mlp", exclude: "down_proj")
        XCTAssert(f.selects(info("lm_head.weight")))
        XCTAssert(f.selects(info("model.layers.0.mlp.up_proj.weight")))
        XCTAssertFalse(f.selects(info("model.layers.0.mlp.down_proj.weight")))
        XCTAssertFalse(f.selects(info("model.layers.0.self_attn.q_proj.weight")))
        XCTAssertThrowsError(try TensorSelector(include: "(", exclude: nil)) { XCTAssert("\($0)".contains("--include")) }
    }

    func testQuantizeRejectsNaNWeightAndLeavesNoFile() throws {
        let dir = try makeTempDirectory(self)
        let input = dir.appendingPathComponent("in.safetensors"), out = dir.appendingPathComponent("out.safetensors")
        let writer = try SafeTensorsWriter(url: input)
        var w = [Float](repeating: 0.5, count: 64 * 8)
        w[70] = .nan
        try writer.add("a.weight", floats: w, shape: [8, 64])
        try writer.commit()
        XCTAssertThrowsError(try CheckpointConversion.quantize(input: input, output: out, options: QuantizeOptions())) { error in
            guard case let QLoraError.quantization(tensor, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "a.weight")
            XCTAssert(reason.contains("row 1, column 6"), reason)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["in.safetensors"])
    }

    func testQuantizeRejectsBlockSize48AndLeavesNoFile() throws {
        let dir = try makeTempDirectory(self)
        let out = dir.appendingPathComponent("out.safetensors")
        var options = QuantizeOptions()
        options.blockSize = 48
        XCTAssertThrowsError(try CheckpointConversion.quantize(input: Reference.url(Self.fp32Path), output: out, options: options)) {
            XCTAssertEqual($0 as? QLoraError, .invalidConfig(field: "blockSize", reason: "must be a power of two from 32 to 4096, got 48"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testQuantizeRejectsAlreadyQuantizedInput() throws {
        let dir = try makeTempDirectory(self)
        XCTAssertThrowsError(try CheckpointConversion.quantize(input: Reference.url(Self.bnbPath), output: dir.appendingPathComponent("o"),
                                                               options: QuantizeOptions())) { XCTAssert("\($0)".contains("already")) }
    }

    // MARK: malformed 4-bit layouts

    /// The reference checkpoint with `edit` applied to its tensors, opened as a BnbCheckpoint.
    func editedCheckpoint(_ edit: (inout [String: (SafeTensorsDType, [Int], [UInt8])]) -> Void) throws -> BnbCheckpoint {
        let file = try SafeTensorsFile(url: Reference.url(Self.bnbPath))
        var tensors: [String: (SafeTensorsDType, [Int], [UInt8])] = [:]
        for n in file.names { let i = try file.info(n); tensors[n] = (i.dtype, i.shape, try file.bytes(n)) }
        edit(&tensors)
        let url = try makeTempDirectory(self).appendingPathComponent("e.safetensors")
        let writer = try SafeTensorsWriter(url: url)
        for (n, t) in tensors { try t.2.withUnsafeBytes { try writer.add(n, dtype: t.0, shape: t.1, bytes: $0) } }
        try writer.commit()
        let checkpoint = try BnbCheckpoint(url: url)
        for n in checkpoint.quantizedNames { _ = try checkpoint.quantized(n) }
        return checkpoint
    }

    let p = "model.layers.0.mlp.up_proj.weight"

    func testWrongQuantMapIsRejected() {
        assertMalformed(try editedCheckpoint { t in t[p + ".quant_map"]!.2[0] ^= 1 }, field: p + ".quant_map", reason: "codebook")
    }

    func testMissingAbsmaxIsRejected() {
        assertMalformed(try editedCheckpoint { t in t[p + ".absmax"] = nil }, field: p + ".absmax", reason: "missing")
    }

    func testPackedSizeMismatchIsRejected() {
        assertMalformed(try editedCheckpoint { t in t[p] = (.u8, [4095, 1], [UInt8](repeating: 0, count: 4095)) },
                        field: p + ".shape", reason: "expected 4096")
    }

    func testQuantStateErrors() {
        let key = p + ".quant_state.bitsandbytes__nf4"
        func state(_ json: String) -> (SafeTensorsDType, [Int], [UInt8]) { (.u8, [json.utf8.count], Array(json.utf8)) }
        assertMalformed(try editedCheckpoint { t in t[key] = state("{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [128, 64], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.3}") },
                        field: "quant_type", reason: "disagrees")
        assertMalformed(try editedCheckpoint { t in t[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [128, 64], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\"}") },
                        field: "nested_offset", reason: "missing")
        assertMalformed(try editedCheckpoint { t in t[key] = state("{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float32\", \"shape\": [128, 64]}") },
                        field: "blocksize", reason: "48")
        assertMalformed(try editedCheckpoint { t in t[key] = state("{\"quant_type\": \"nf4\"") }, field: key, reason: "invalid JSON")
    }
}
