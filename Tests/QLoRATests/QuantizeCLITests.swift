import Foundation
import XCTest
@testable import QLoRA

/// Runs the built `qlora` executable as a subprocess.
final class QuantizeCLITests: XCTestCase {
    struct Result { let status: Int32; let stdout: String; let stderr: String }

    /// The qlora binary next to the test bundle, or in .build/release.
    func executable() throws -> URL {
        let candidates = [Bundle.main.bundleURL.appendingPathComponent("qlora"),
                          Bundle(for: Self.self).bundleURL.deletingLastPathComponent().appendingPathComponent("qlora"),
                          Reference.projectRoot.appendingPathComponent(".build/release/qlora")]
        guard let url = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw QLoraError.io(file: candidates.last!.path, reason: "qlora executable not built")
        }
        return url
    }

    func run(_ arguments: [String]) throws -> Result {
        let r = try CLIRunner.run(executable(), arguments)
        return Result(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    /// Asserts a failed run: non-zero status, exactly one "error: …" line containing `text`, and
    /// nothing but `keep` left in `dir`.
    func assertFailure(_ r: Result, _ text: String, dir: URL, keep: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssert(r.stderr.hasPrefix("error: ") && r.stderr.contains(text), "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), keep.sorted(), file: file, line: line)
    }

    func testQuantizeThenDequantize() throws {
        let dir = try makeTempDirectory(self)
        let q = dir.appendingPathComponent("q.safetensors").path, d = dir.appendingPathComponent("d.safetensors").path
        let r = try run(["quantize", Reference.url("interop/model_fp32/model.safetensors").path, "-o", q, "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        XCTAssert(r.stdout.contains("quantized 7 tensors (36864 parameters, nf4, block 64, double quant); copied 8"), r.stdout)
        XCTAssert(r.stdout.contains("bits per parameter"), r.stdout)
        let reference = try SafeTensorsFile(url: Reference.url("interop/model_bnb4bit/model.safetensors"))
        XCTAssertEqual(try SafeTensorsFile(url: URL(fileURLWithPath: q)).names, reference.names)

        let r2 = try run(["dequantize", Reference.url("interop/model_bnb4bit/model.safetensors").path, "-o", d])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        XCTAssert(r2.stdout.contains("dequantized 7 tensors"), r2.stdout)
        let out = try SafeTensorsFile(url: URL(fileURLWithPath: d))
        let layer = "model.layers.0.self_attn.o_proj"
        XCTAssertEqual(try out.info(layer + ".weight").shape, [64, 64])
        assertBitIdentical(try out.floats(layer + ".weight"), try Reference.floats("interop/expected/\(layer).W_dequant.f32"), layer)
        XCTAssertFalse(out.contains(layer + ".weight.absmax"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["d.safetensors", "q.safetensors"])
    }

    func testFP4PlainStatisticsAndFilters() throws {
        let dir = try makeTempDirectory(self)
        let q = dir.appendingPathComponent("q.safetensors")
        let r = try run(["quantize", Reference.url("interop/model_fp32/model.safetensors").path, "-o", q.path,
                         "--quant-type", "fp4", "--block-size", "128", "--no-double-quant", "--include", "mlp|lm_head", "--exclude", "down"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let checkpoint = try BnbCheckpoint(url: q)
        XCTAssertEqual(checkpoint.quantizedNames, ["lm_head.weight", "model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight"])
        let state = try checkpoint.quantState("lm_head.weight")
        XCTAssertEqual(state.quantType, .fp4)
        XCTAssertEqual(state.blockSize, 128)
        XCTAssertNil(state.nested)
    }

    func testBlockSize48Fails() throws {
        let dir = try makeTempDirectory(self)
        let r = try run(["quantize", Reference.url("interop/model_fp32/model.safetensors").path, "-o", dir.appendingPathComponent("o.safetensors").path,
                         "--block-size", "48"])
        try assertFailure(r, "blockSize: must be a power of two from 32 to 4096, got 48", dir: dir)
    }

    func testNaNWeightFails() throws {
        let dir = try makeTempDirectory(self)
        let input = dir.appendingPathComponent("in.safetensors")
        let writer = try SafeTensorsWriter(url: input)
        var w = [Float](repeating: 1, count: 128)
        w[5] = .nan
        try writer.add("m.weight", floats: w, shape: [2, 64])
        try writer.commit()
        let r = try run(["quantize", input.path, "-o", dir.appendingPathComponent("o.safetensors").path])
        try assertFailure(r, "quantization of 'm.weight' failed: non-finite value nan at flat index 5", dir: dir, keep: ["in.safetensors"])
    }

    func testTruncatedInputFails() throws {
        let dir = try makeTempDirectory(self)
        let input = dir.appendingPathComponent("in.safetensors")
        try Reference.data("interop/model_fp32/model.safetensors").prefix(5000).write(to: input)
        let r = try run(["dequantize", input.path, "-o", dir.appendingPathComponent("o.safetensors").path])
        try assertFailure(r, "malformed file \(input.path)", dir: dir, keep: ["in.safetensors"])
    }

    func testMissingInputFails() throws {
        let dir = try makeTempDirectory(self)
        let r = try run(["quantize", dir.appendingPathComponent("nope.safetensors").path, "-o", dir.appendingPathComponent("o.safetensors").path])
        try assertFailure(r, "I/O error", dir: dir)
    }

    func testBadQuantTypeFails() throws {
        let dir = try makeTempDirectory(self)
        let r = try run(["quantize", Reference.url("interop/model_fp32/model.safetensors").path, "-o", dir.appendingPathComponent("o").path,
                         "--quant-type", "int4"])
        try assertFailure(r, "--quant-type must be nf4 or fp4", dir: dir)
    }
}
