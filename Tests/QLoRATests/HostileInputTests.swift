import XCTest
import Foundation
@testable import QLoRA

/// Hostile inputs the per-reader suites (SafeTensorsTests, GGUFHostileTests, CheckpointTests,
/// AdapterTests, GraphFileTests, TokenizerTests) did not cover yet. Each fails with a QLoraError
/// naming the file, the field and the cause, before allocating what the file claims. The huge
/// token id, the overflowing nested_blocksize and the non-finite adapter weights were accepted
/// before (found while writing the fuzz targets; `make fuzz` itself has found nothing so far).
final class HostileInputTests: XCTestCase {
    /// A safetensors image from (name, dtype, shape, bytes) entries laid end to end.
    func safetensors(_ entries: [(String, String, [Int], [UInt8])], offsets: [[Int]]? = nil) -> Data {
        var parts: [String] = [], data: [UInt8] = []
        for (k, e) in entries.enumerated() {
            let o = offsets?[k] ?? [data.count, data.count + e.3.count]
            parts.append("\"\(e.0)\":{\"dtype\":\"\(e.1)\",\"shape\":\(e.2),\"data_offsets\":\(o)}")
            data += e.3
        }
        let header = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        return Data(withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) } + header + data)
    }

    func f32(_ v: [Float]) -> [UInt8] { v.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } } }

    // MARK: safetensors

    /// A header claiming a 1 TB tensor is refused from the header (nothing is allocated).
    func testTerabyteTensorClaimIsRefused() {
        let tb = 1 << 40
        let d = safetensors([("w", "F32", [1 << 20, 1 << 18], [])], offsets: [[0, tb]])
        assertMalformed(try SafeTensorsFile(data: d, path: "tb.safetensors"), field: "w.data_offsets",
                        reason: "[0, \(tb)] is beyond the data region of 0 bytes")
        let overflow = safetensors([("w", "F32", [1 << 40, 1 << 40], [0, 0, 0, 0])])
        assertMalformed(try SafeTensorsFile(data: overflow, path: "big.safetensors"), field: "w.shape", reason: "too large")
    }

    /// Empty tensors are valid: zero bytes, zero elements, readable; quantizing one is refused.
    func testEmptyTensorsReadAsEmptyAndAreNotQuantized() throws {
        let d = safetensors([("e", "F32", [0, 4], []), ("s", "F32", [], f32([2]))])
        let file = try SafeTensorsFile(data: d, path: "empty.safetensors")
        XCTAssertEqual(try file.tensor("e").shape, [0, 4])
        XCTAssertEqual(try file.floats("e"), [])
        XCTAssertEqual(try file.floats("s"), [2])
        XCTAssertFalse(try TensorSelector(include: nil, exclude: nil).selects(file.info("e")))
        XCTAssertThrowsError(try QuantizedTensor.quantize(file.tensor("e"), name: "e")) { e in
            XCTAssertTrue("\(e)".contains("'e'") || "\(e)".contains("e:") || "\(e)".contains("empty"), "\(e)")
        }
    }

    // MARK: bitsandbytes quant state

    func state(_ json: String) throws -> BnbQuantState {
        try BnbQuantState.parse(Array(json.utf8), expectedType: .nf4, file: "m.safetensors", field: "w.quant_state.bitsandbytes__nf4")
    }

    func testAbsurdQuantStateSizesAreRefused() {
        assertMalformed(try state(#"{"quant_type": "nf4", "blocksize": 1099511627776, "dtype": "float32", "shape": [64]}"#),
                        field: "blocksize", reason: "1099511627776 is not a power of two")
        assertMalformed(try state(#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4611686018427387904, 4]}"#),
                        field: "shape", reason: "too large")
        // nested_blocksize of Int.max used to overflow computing the nested absmax count.
        assertMalformed(try state(#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64], "nested_blocksize": 9223372036854775807, "nested_dtype": "float32", "nested_offset": 0.5}"#),
                        field: "nested_blocksize", reason: "9223372036854775807")
        assertMalformed(try state(#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64], "nested_blocksize": 0, "nested_dtype": "float32", "nested_offset": 0.5}"#),
                        field: "nested_blocksize", reason: "must be > 0")
    }

    /// NaN / Inf statistics in a plain-absmax 4-bit parameter name the tensor and the index.
    func testNonFiniteAbsmaxIsRefused() throws {
        let w = try QuantizedTensor.quantize(Tensor(shape: [2, 64], scalars: (0..<128).map { Float($0) / 64 - 1 }),
                                             blockSize: 64, doubleQuant: false, name: "w")
        let url = try makeTempDirectory(self).appendingPathComponent("nan.safetensors")
        let writer = try SafeTensorsWriter(url: url)
        try writer.addQuantized("w", w)
        try writer.commit()
        var bytes = try [UInt8](Data(contentsOf: url))
        let file = try SafeTensorsFile(url: url)
        // Overwrite absmax[1] with NaN in the image.
        let headerLength = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let at = 8 + headerLength + (try file.info("w.absmax")).dataOffsets.lowerBound + 4
        bytes.replaceSubrange(at..<(at + 4), with: f32([.nan]))
        let checkpoint = try BnbCheckpoint(file: SafeTensorsFile(data: Data(bytes), path: "nan.safetensors"))
        assertMalformed(try checkpoint.quantized("w"), field: "w.absmax", reason: "non-finite value nan at index 1")
    }

    // MARK: PEFT adapter

    func adapterConfig(r: Int) throws -> LoraAdapterConfig {
        try LoraAdapterConfig.parse(Array(#"{"r": \#(r), "lora_alpha": 16, "target_modules": ["up_proj"]}"#.utf8), file: "adapter_config.json")
    }

    /// NaN / Inf LoRA weights would poison every output silently: refused on load.
    func testNonFiniteAdapterWeightsAreRefused() throws {
        let a = f32([0.5, .infinity, 0, 0]), b = f32([1, 2, 3, 4])
        let d = safetensors([("base_model.model.m.up_proj.lora_A.weight", "F32", [2, 2], a),
                             ("base_model.model.m.up_proj.lora_B.weight", "F32", [2, 2], b)])
        let file = try SafeTensorsFile(data: d, path: "adapter_model.safetensors")
        assertMalformed(try LoraAdapter(config: adapterConfig(r: 2), file: file),
                        field: "base_model.model.m.up_proj.lora_A.weight", reason: "non-finite value inf at index 1")
    }

    // MARK: tokenizer.json

    /// A vocabulary id of two billion used to size the id tables (tens of GB) before anything else.
    func testHugeTokenIdIsRefusedBeforeAllocating() {
        let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 2000000000}, "merges": []}}"#
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: Array(json.utf8), file: "tok.json")) { e in
            guard case let QLoraError.malformedFile(file, field, reason) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, "tok.json")
            XCTAssertEqual(field, "model.vocab[\"b\"]")
            XCTAssertTrue(reason.contains("2000000000"), reason)
        }
        let added = #"{"added_tokens": [{"id": 1999999999, "content": "<x>", "special": true}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#
        XCTAssertThrowsError(try BPETokenizer(tokenizerJSON: Array(added.utf8), file: "tok.json")) { e in
            XCTAssertTrue("\(e)".contains("added_tokens[0].id"), "\(e)")
        }
    }

    // MARK: graph JSON

    func graph(_ ops: String) throws -> GraphDefinition {
        try GraphDefinition.parse(Array(#"{"format": "qlora-graph", "version": 1, "inputs": [{"name": "x", "shape": [4]}], "ops": [\#(ops)], "outputs": [{"name": "y"}]}"#.utf8), file: "cycle.json")
    }

    /// Values must be defined before use, so a cycle is a reference to an undefined value, named
    /// with its JSON path.
    func testCyclesAndSelfReferencesAreRefused() {
        XCTAssertThrowsError(try graph(#"{"op": "relu", "inputs": ["y"], "output": "y"}"#)) { e in
            XCTAssertTrue("\(e)".contains("$.ops[0].inputs[0]") && "\(e)".contains("\"y\" is not defined"), "\(e)")
        }
        XCTAssertThrowsError(try graph(#"{"op": "add", "inputs": ["x", "b"], "output": "a"}, {"op": "relu", "inputs": ["a"], "output": "b"}, {"op": "relu", "inputs": ["b"], "output": "y"}"#)) { e in
            XCTAssertTrue("\(e)".contains("$.ops[0].inputs[1]") && "\(e)".contains("\"b\" is not defined"), "\(e)")
        }
    }
}
