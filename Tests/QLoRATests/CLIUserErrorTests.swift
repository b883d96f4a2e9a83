import Foundation
import XCTest
@testable import QLoRA

/// Every user error of the command line is one `error:` line naming the user's path or value and
/// the real cause, with exit status 1 (issue 15); warnings for commands that had nothing to do.
final class CLIUserErrorTests: XCTestCase {
    static let interop = Reference.url("interop")
    static let bnb = interop.appendingPathComponent("model_bnb4bit/model.safetensors").path
    static let fp32 = interop.appendingPathComponent("model_fp32/model.safetensors").path
    static func graph(_ name: String) -> String { Reference.projectRoot.appendingPathComponent("Graphs/\(name).json").path }

    var tmp: URL!
    var input = ""

    override func setUpWithError() throws {
        tmp = try makeTempDirectory(self)
        let url = tmp.appendingPathComponent("x.safetensors")
        let w = try SafeTensorsWriter(url: url)
        try w.add("x", tensor: try Reference.tensor("interop/expected/x3d.f32", shape: [2, 4, 64]))
        try w.commit()
        input = url.path
    }

    func run(output: String, _ extra: [String] = []) -> [String] {
        ["run", Self.graph("llama-mlp"), "--weights", Self.bnb, "--input", input, "--output", output] + extra
    }

    // MARK: --output

    func testOutputIntoAMissingDirectory() throws {
        let out = tmp.appendingPathComponent("nope/y.safetensors").path
        try CLIRunner.assertUserError(run(output: out), [out, "directory \(tmp.appendingPathComponent("nope").path) does not exist"])
        try CLIRunner.assertUserError(["quantize", Self.fp32, "-o", out], ["does not exist"])
        try CLIRunner.assertUserError(["dequantize", Self.bnb, "-o", out], ["does not exist"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), ["x.safetensors"])
    }

    func testOutputIsADirectory() throws {
        try CLIRunner.assertUserError(run(output: tmp.path), ["--output \(tmp.path) is a directory"])
    }

    func testOutputDirectoryNotWritable() throws {
        // Root may write anywhere a permission bit forbids, but never into /proc.
        let dir: String
        if getuid() == 0 {
            dir = "/proc"
        } else {
            dir = tmp.appendingPathComponent("locked").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o555])
        }
        try CLIRunner.assertUserError(run(output: dir + "/y.safetensors"), ["directory \(dir) is not writable"])
    }

    func testReadOnlyOutputNeedsForce() throws {
        let out = tmp.appendingPathComponent("y.safetensors").path
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out))
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: out)
        try CLIRunner.assertUserError(run(output: out), [out, "read-only", "--force"])
        XCTAssertEqual(FileManager.default.contents(atPath: out), Data("keep".utf8), "refused: the file is untouched")
        let r = try CLIRunner.run(run(output: out, ["--force"]))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("replaced the read-only file \(out)"), r.stderr)
        XCTAssertEqual(try SafeTensorsFile(url: URL(fileURLWithPath: out)).tensor("y").shape, [2, 4, 64])
    }

    // MARK: option values and the command line

    func testNegativeCountsNameTheOptionAndValue() throws {
        let inspect = ["inspect", Self.graph("llama-mlp"), "--weights", Self.bnb]
        try CLIRunner.assertUserError(inspect + ["--threads", "-1"], ["--threads must be > 0, got -1"])
        try CLIRunner.assertUserError(inspect + ["--tokens", "-1"], ["--tokens must be > 0, got -1"])
        try CLIRunner.assertUserError(["dump", Self.graph("llama-mlp"), "--weights", Self.bnb, "--tokens", "0"], ["--tokens must be > 0, got 0"])
        try CLIRunner.assertUserError(run(output: tmp.appendingPathComponent("y.safetensors").path, ["--threads", "-3"]), ["--threads must be > 0, got -3"])
        try CLIRunner.assertUserError(["quantize", Self.fp32, "-o", tmp.appendingPathComponent("q").path, "--block-size", "-64"],
                                      ["got -64"])
    }

    func testParserErrorsHaveTheSameFormatAndExitCode() throws {
        let inspect = ["inspect", Self.graph("llama-mlp"), "--weights", Self.bnb]
        try CLIRunner.assertUserError(inspect + ["--threads"], ["--threads"])
        try CLIRunner.assertUserError(inspect + ["--threads", "two"], ["'two'", "--threads"])
        try CLIRunner.assertUserError(inspect + ["--mode", "fast"], ["'fast'", "--mode"])
        try CLIRunner.assertUserError(inspect + ["--bogus"], ["--bogus"])
        try CLIRunner.assertUserError(["inspect"], ["<graph>"])
        try CLIRunner.assertUserError(["frobnicate"], ["frobnicate"])
        for args in [["--help"], ["run", "--help"], ["--version"]] {
            let r = try CLIRunner.run(args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertFalse(r.stdout.isEmpty)
        }
        XCTAssertEqual(try CLIRunner.run(["--version"]).stdout, "\(Self.version)\n")
    }

    /// The version `qlora --version` prints, as docs/cli.md states it.
    static var version: String {
        let doc = (try? String(contentsOf: Reference.projectRoot.appendingPathComponent("docs/cli.md"), encoding: .utf8)) ?? ""
        let line = doc.split(separator: "\n").first { $0.hasPrefix("$ qlora --version") }.flatMap { l in
            doc.split(separator: "\n").drop { $0 != l }.dropFirst().first
        }
        return line.map(String.init) ?? "(not in docs/cli.md)"
    }

    // MARK: valid files that do not fit are not "malformed"

    func testShapeDisagreementIsNotMalformed() throws {
        let args = run(output: tmp.appendingPathComponent("y.safetensors").path, ["--dim", "hidden=32"])
        try CLIRunner.assertUserError(args, ["llama-mlp.json at $.inputs[0].shape", "dimension 'hidden' is 32", "[2, 4, 64]"])
        XCTAssertFalse(try CLIRunner.run(args).stderr.contains("malformed"))
    }

    func testMissingTensorSuggestsNearNames() throws {
        let out = tmp.appendingPathComponent("y.safetensors").path
        let args = ["run", Self.graph("llama-mlp-stack"), "--weights", Self.bnb, "--input", input, "--output", out]
        try CLIRunner.assertUserError(args, [Self.bnb, "no such tensor 'model.layers.1.post_attention_layernorm.weight'",
                                             "did you mean 'model.layers.0.post_attention_layernorm.weight'?"])
        XCTAssertFalse(try CLIRunner.run(args).stderr.contains("malformed"))
        try CLIRunner.assertUserError(["inspect", Self.graph("quantized-linear"), "--weights", Self.bnb],
                                      ["no such tensor 'proj.weight'", "did you mean 'model.layers.0.mlp.down_proj.weight'"])
    }

    func testGraphGivenAsWeightsIsNotASafetensorsFile() throws {
        let g = Self.graph("llama-mlp")
        try CLIRunner.assertUserError(["inspect", g, "--weights", g], ["\(g) is not a safetensors file", "starts with the text \"{"])
        try CLIRunner.assertUserError(run(output: tmp.appendingPathComponent("y.safetensors").path).map { $0 == input ? g : $0 },
                                      ["\(g) is not a safetensors file"])
    }

    // MARK: one clear sentence

    func testUnresolvedDimensionNamesThePathOnce() throws {
        let g = Self.graph("llama-mlp")
        let r = try CLIRunner.run(["dump", g, "--dim", "hidden=64"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: \(g) at $.ops[0].out: dimension 'intermediate' has no value: pass --weights or --dim intermediate=N\n")
    }

    func testAddOfDifferentShapesIsOneSentence() throws {
        let g = tmp.appendingPathComponent("add.json")
        try #"""
            {"format": "qlora-graph", "version": 1, "inputs": [{"name": "x", "shape": ["...", "hidden"]}],
             "ops": [{"op": "linear", "module": "model.layers.0.mlp.gate_proj", "inputs": ["x"], "output": "g"},
                     {"op": "add", "inputs": ["x", "g"], "output": "y"}], "outputs": [{"name": "y"}]}
            """#.write(to: g, atomically: true, encoding: .utf8)
        let r = try CLIRunner.run(["inspect", g.path, "--weights", Self.bnb])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: \(g.path) at $.ops[1].inputs[1]: add needs equal shapes, but 'x' is [..., hidden=64] and 'g' is [..., 128]\n")
    }

    // MARK: nothing to do

    func testQuantizeIncludeMatchingNothingWarnsOrFailsWithStrict() throws {
        let out = tmp.appendingPathComponent("q.safetensors").path
        let r = try CLIRunner.run(["quantize", Self.fp32, "-o", out, "--include", "nomatch"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.hasPrefix("warning: no tensor of \(Self.fp32) is quantized"), r.stderr)
        XCTAssert(r.stderr.contains("--include \"nomatch\""), r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: out))
        let strict = tmp.appendingPathComponent("strict.safetensors").path
        try CLIRunner.assertUserError(["quantize", Self.fp32, "-o", strict, "--include", "nomatch", "--strict"],
                                      ["--include \"nomatch\"", "(--strict)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: strict))
        // A selection that matches gives no warning.
        XCTAssertEqual(try CLIRunner.run(["quantize", Self.fp32, "-o", out, "--include", "mlp", "--strict"]).stderr, "")
    }

    func testDequantizeWithoutFourBitTensorsWarnsOrFailsWithStrict() throws {
        let out = tmp.appendingPathComponent("d.safetensors").path
        let r = try CLIRunner.run(["dequantize", Self.fp32, "-o", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "warning: \(Self.fp32) has no bitsandbytes 4-bit tensors: nothing to dequantize; every tensor is copied unchanged\n")
        let strict = tmp.appendingPathComponent("strict.safetensors").path
        try CLIRunner.assertUserError(["dequantize", Self.fp32, "-o", strict, "--strict"], [Self.fp32, "no bitsandbytes 4-bit tensors"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: strict))
    }
}
