import CQLoRAKernels
import Foundation
import XCTest
@testable import QLoRA

/// Runs the built `qlora` executable as a subprocess: dump, inspect, run on the shared interop
/// files, every error class, and the demo.
final class CLITests: XCTestCase {
    static let interop = Reference.url("interop")
    static let bnb = interop.appendingPathComponent("model_bnb4bit/model.safetensors").path
    static let fp32 = interop.appendingPathComponent("model_fp32/model.safetensors").path
    static let adapter = interop.appendingPathComponent("adapter").path
    static func graph(_ name: String) -> String { Reference.projectRoot.appendingPathComponent("Graphs/\(name).json").path }

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// The executable next to the test bundle, else under the project's .build/release.
    static var executable: URL {
        // The bundle's URL is the build directory itself on Linux (a .xctest file inside it) and the
        // .xctest directory on macOS; either way the executable of the same build comes first, so
        // `make test-portable` runs its own portable `qlora`, not .build/release's.
        let bundle = Bundle(for: CLITests.self).bundleURL
        let candidates = [bundle.appendingPathComponent("qlora"), bundle.deletingLastPathComponent().appendingPathComponent("qlora"),
                          Reference.projectRoot.appendingPathComponent(".build/release/qlora")]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[2]
    }

    typealias Result = CLIRunner.Result

    func qlora(_ args: [String]) throws -> Result { try CLIRunner.run(args) }

    func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let r = try qlora(args)
        XCTAssertEqual(r.status, 0, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r.stdout
    }

    /// A failing command: non-zero exit, one `error:` line on stderr mentioning every fragment.
    func fails(_ args: [String], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try qlora(args)
        XCTAssertNotEqual(r.status, 0, "expected failure: qlora \(args.joined(separator: " "))", file: file, line: line)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        for f in fragments { XCTAssert(r.stderr.contains(f), "stderr '\(r.stderr)' does not mention '\(f)'", file: file, line: line) }
    }

    func writeInput(_ name: String, _ tensors: [String: Tensor]) throws -> String {
        let url = tmp.appendingPathComponent(name)
        let w = try SafeTensorsWriter(url: url)
        for (k, t) in tensors { try w.add(k, tensor: t) }
        try w.commit()
        return url.path
    }

    func output(_ path: String) throws -> Tensor { try SafeTensorsFile(url: URL(fileURLWithPath: path)).tensor("y") }

    // MARK: dump

    func testDumpFormatsWithoutWeights() throws {
        let dims = ["--dim", "hidden=64", "--dim", "intermediate=128", "--tokens", "4"]
        let text = try ok(["dump", Self.graph("llama-mlp")] + dims)
        XCTAssert(text.contains("quantized_weight[nf4, block 64, double-quant]() : q4[128x64]"), text)
        XCTAssert(text.contains("input[x]() : f32[4x64]"), text)
        let optimized = try ok(["dump", Self.graph("llama-mlp"), "--stage", "optimized"] + dims)
        // gate/up: one group step with the silu·mul epilogue; down: a fused linear.
        XCTAssertEqual(optimized.components(separatedBy: "fused_qlora_linear").count - 1, 2)
        XCTAssert(optimized.contains("fused_qlora_linear_group_silu_mul"))

        let dot = try ok(["dump", Self.graph("llama-mlp"), "--stage", "optimized", "--format", "dot"] + dims)
        XCTAssertEqual(dot.components(separatedBy: "subgraph cluster_").count - 1, 2)
        XCTAssertEqual(dot.filter { $0 == "{" }.count, dot.filter { $0 == "}" }.count)
        if let dotTool = ["/usr/bin/dot", "/usr/local/bin/dot"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let file = tmp.appendingPathComponent("g.dot")
            try dot.write(to: file, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: dotTool)
            p.arguments = ["-Tsvg", file.path, "-o", tmp.appendingPathComponent("g.svg").path]
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "dot rejected the output")
        }
    }

    func testJSONDumpRoundTripsAgainstTheLibrary() throws {
        for stage in ["recorded", "optimized"] {
            let text = try ok(["dump", Self.graph("llama-mlp"), "--weights", Self.bnb, "--format", "json", "--stage", stage, "--tokens", "3"])
            let parsed = try IRDump.decode(JSONValue.parse(Array(text.utf8), file: "stdout", field: "$"))
            let def = try GraphDefinition.load(url: URL(fileURLWithPath: Self.graph("llama-mlp")), dims: ["tokens": 3])
            let g = try def.load(weights: CheckpointWeights(url: URL(fileURLWithPath: Self.bnb))).graph
            XCTAssertEqual(parsed, try g.irDump(stage: DumpStage(rawValue: stage)!, options: CompileOptions(threads: 1)), stage)
        }
    }

    // MARK: inspect

    func testInspectJSONAgreesWithThePlanAPI() throws {
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: Self.graph("llama-mlp")), dims: ["tokens": 5])
        let g = try def.load(weights: CheckpointWeights(url: URL(fileURLWithPath: Self.bnb))).graph
        for mode in [ExecutionMode.onTheFly, .cached] {
            let text = try ok(["inspect", Self.graph("llama-mlp"), "--weights", Self.bnb, "--mode", mode.rawValue,
                               "--tokens", "5", "--threads", "2", "--format", "json"])
            let json = try JSONValue.parse(Array(text.utf8), file: "stdout", field: "$")
            let plan = try g.compile(CompileOptions(mode: mode, threads: 2))
            let p = try XCTUnwrap(json["plan"])
            XCTAssertEqual(p["mode"], .string(mode.rawValue))
            XCTAssertEqual(p["memory"]?["arena_bytes"], .int(plan.arenaBytes))
            XCTAssertEqual(p["memory"]?["persistent_bytes"], .int(plan.persistentBytes))
            XCTAssertEqual(p["memory"]?["scratch_bytes"], .int(plan.scratchBytes))
            guard case let .array(steps)? = p["steps"] else { return XCTFail("no steps") }
            XCTAssertEqual(steps.count, plan.steps.count)
            for (s, step) in zip(steps, plan.steps) {
                XCTAssertEqual(s["flops"], .int(step.flops))
                XCTAssertEqual(s["bytes_moved"], .int(step.bytesMoved))
                XCTAssertEqual(s["kernel"], .string(step.kernelName))
            }
            guard case let .array(buffers)? = p["buffers"] else { return XCTFail("no buffers") }
            XCTAssertFalse(buffers.isEmpty)
            for b in buffers { XCTAssertNotNil(b["offset"]); XCTAssertNotNil(b["first_step"]); XCTAssertNotNil(b["last_step"]) }
            // Both modes are compared whatever mode is shown.
            let otf = try g.compile(CompileOptions(mode: .onTheFly, threads: 2)), cached = try g.compile(CompileOptions(mode: .cached, threads: 2))
            XCTAssertEqual(json["modes"]?["on-the-fly"]?["persistent_bytes"], .int(otf.persistentBytes))
            XCTAssertEqual(json["modes"]?["cached"]?["persistent_bytes"], .int(cached.persistentBytes))
        }
        let text = try ok(["inspect", Self.graph("llama-mlp"), "--weights", Self.bnb, "--tokens", "5"])
        for fragment in ["fused_qlora_linear(on-the-fly)", "silu_mul", "arena buffers", "memory by mode:", "on-the-fly", "cached f32"] {
            XCTAssert(text.contains(fragment), "inspect text lacks '\(fragment)'")
        }
    }

    // MARK: run

    func testRunMatchesPEFTWithAndWithoutTheAdapter() throws {
        for (kind, shape) in [("x2d", [3, 64]), ("x3d", [2, 4, 64])] {
            let x = try Reference.tensor("interop/expected/\(kind).f32", shape: shape)
            let input = try writeInput("\(kind).safetensors", ["x": x])
            var loraOutputs: [String: Tensor] = [:]
            for (weights, mode) in [(Self.bnb, "on-the-fly"), (Self.bnb, "cached"), (Self.fp32, "on-the-fly")] {
                let lora = tmp.appendingPathComponent("lora-\(kind)-\(mode).safetensors").path
                _ = try ok(["run", Self.graph("llama-mlp"), "--weights", weights, "--adapter", Self.adapter, "--input", input,
                            "--output", lora, "--mode", mode, "--threads", "2"])
                let y = try output(lora)
                XCTAssertEqual(y.shape, shape)
                loraOutputs["\(weights) \(mode)"] = y
                assertClose(y.scalars, try Reference.floats("interop/expected/model.layers.0.mlp.\(kind).y_lora.f32"), relative: 1e-5,
                            "\(kind) y_lora from \(weights) \(mode)")
                let base = tmp.appendingPathComponent("base-\(kind)-\(mode).safetensors").path
                _ = try ok(["run", Self.graph("llama-mlp"), "--weights", weights, "--input", input, "--output", base, "--mode", mode])
                assertClose(try output(base).scalars, try Reference.floats("interop/expected/model.layers.0.mlp.\(kind).y_base.f32"),
                            relative: 1e-5, "\(kind) y_base from \(weights) \(mode)")
            }
            // Quantizing the f32 model at load reproduces the bitsandbytes checkpoint exactly.
            assertBitIdentical(loraOutputs["\(Self.fp32) on-the-fly"]!.scalars, loraOutputs["\(Self.bnb) on-the-fly"]!.scalars,
                               "\(kind): f32 model quantized at load vs 4-bit checkpoint")
        }
    }

    func testRunNotesUnusedAdapterModules() throws {
        let x = try Reference.tensor("interop/expected/x2d.f32", shape: [3, 64])
        let input = try writeInput("x.safetensors", ["x": x])
        // quantized-linear over an interop module via a one-op graph file.
        let g = tmp.appendingPathComponent("gate.json")
        try #"{"format": "qlora-graph", "version": 1, "inputs": [{"name": "x", "shape": ["...", "hidden"]}],"#
            .appending(#""ops": [{"op": "linear", "module": "model.layers.0.mlp.gate_proj", "inputs": ["x"], "output": "y"}], "outputs": [{"name": "y"}]}"#)
            .write(to: g, atomically: true, encoding: .utf8)
        let out = tmp.appendingPathComponent("y.safetensors").path
        let r = try qlora(["run", g.path, "--weights", Self.bnb, "--adapter", Self.adapter, "--input", input, "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("note: adapter has weights for 'model.layers.0.mlp.up_proj'"), r.stderr)
        assertClose(try output(out).scalars, try Reference.floats("interop/expected/model.layers.0.mlp.gate_proj.x2d.lora.f32"),
                    relative: 1e-5, "gate_proj lora")
    }

    /// Products that underflow are flushed to zero by default and kept (denormal) with --ieee-denormals.
    func testIeeeDenormalsKeepsTinyValues() throws {
        try XCTSkipUnless(cq_float_mode_supported() != 0, "FTZ / DAZ are x86-64 modes")
        let n = 50_000 // both threads take a share
        let x = try Tensor(shape: [n], scalars: (0..<n).map { Float($0 % 5 + 1) * 1e-20 })  // x·x is denormal
        let input = try writeInput("tiny.safetensors", ["x": x])
        let g = tmp.appendingPathComponent("square.json")
        try #"{"format": "qlora-graph", "version": 1, "inputs": [{"name": "x", "shape": ["n"]}],"#
            .appending(#""ops": [{"op": "mul", "inputs": ["x", "x"], "output": "y"}], "outputs": [{"name": "y"}]}"#)
            .write(to: g, atomically: true, encoding: .utf8)
        let flushed = tmp.appendingPathComponent("y-flushed.safetensors").path, ieee = tmp.appendingPathComponent("y-ieee.safetensors").path
        _ = try ok(["run", g.path, "--weights", Self.bnb, "--input", input, "--output", flushed, "--threads", "2"])
        _ = try ok(["run", g.path, "--weights", Self.bnb, "--input", input, "--output", ieee, "--threads", "2", "--ieee-denormals"])
        XCTAssertEqual(try output(flushed).scalars.filter { $0 != 0 }.count, 0, "underflowing products are flushed by default")
        let kept = try output(ieee).scalars, expect = x.scalars.map { $0 * $0 }
        XCTAssertTrue(expect.allSatisfy(\.isSubnormal))
        XCTAssertEqual(kept.indices.filter { kept[$0].bitPattern != expect[$0].bitPattern }.count, 0, "--ieee-denormals keeps x·x")
    }

    // MARK: errors

    func testErrorsAreOneLineAndLeaveNoOutput() throws {
        let x = try writeInput("x.safetensors", ["x": try Reference.tensor("interop/expected/x2d.f32", shape: [3, 64])])
        let wrongName = try writeInput("w.safetensors", ["input": try Reference.tensor("interop/expected/x2d.f32", shape: [3, 64])])
        let wrongShape = try writeInput("s.safetensors", ["x": Tensor.zeros(shape: [3, 48])])
        let out = tmp.appendingPathComponent("y.safetensors").path
        let run = ["run", Self.graph("llama-mlp"), "--weights", Self.bnb, "--output", out]
        // Missing files.
        try fails(run + ["--input", "/nonexistent/x.safetensors"], ["/nonexistent/x.safetensors", "No such file"])
        try fails(["run", Self.graph("llama-mlp"), "--weights", "/nonexistent/w.safetensors", "--input", x, "--output", out],
                  ["/nonexistent/w.safetensors"])
        try fails(["dump", "/nonexistent/g.json"], ["/nonexistent/g.json", "no such file"])
        // Unknown tensor names: an input, a weight.
        try fails(run + ["--input", wrongName], ["w.safetensors", "x", "no such tensor"])
        try fails(["inspect", Self.graph("quantized-linear"), "--weights", Self.bnb], ["proj.weight", "no such tensor", "$.ops[0]"])
        // Shape disagreement: both shapes named.
        try fails(run + ["--input", wrongShape], ["$.ops[0].inputs[0]", "[3, 48]", "[128, 64]", "gives 64"])
        // Malformed graph JSON.
        let badGraph = tmp.appendingPathComponent("bad.json")
        try #"{"format": "qlora-graph", "version": 1, "inputs": [{"name": "x", "shape": [2]}], "ops": [{"op": "linear"}], "outputs": []}"#
            .write(to: badGraph, atomically: true, encoding: .utf8)
        try fails(["dump", badGraph.path], ["bad.json", "$.ops[0].inputs", "missing"])
        try "{ not json".write(to: badGraph, atomically: true, encoding: .utf8)
        try fails(["dump", badGraph.path], ["bad.json", "invalid JSON"])
        // Malformed safetensors.
        let badST = tmp.appendingPathComponent("bad.safetensors")
        try Data([200, 0, 0, 0, 0, 0, 0, 0, 123]).write(to: badST)
        try fails(run + ["--input", badST.path], ["bad.safetensors", "header length"])
        try fails(["inspect", Self.graph("llama-mlp"), "--weights", badST.path], ["bad.safetensors"])
        // Bad option values.
        try fails(["dump", Self.graph("llama-mlp"), "--dim", "hidden"], ["--dim expects NAME=N"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no output file after a failed run")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: tmp.path).filter { $0.hasPrefix("y.safetensors") }
        XCTAssertEqual(leftovers, [], "no temporary files left behind")
    }

    // MARK: demo

    func testSyntheticDemoPasses() throws {
        let out = try ok(["demo", "--synthetic", "--repeats", "1"])
        XCTAssert(out.contains("verdict: PASS"), out)
        XCTAssertFalse(out.contains("FAIL"), out)
    }

    /// The fine-tuning job (`make demo`, minutes) runs from the Makefile; here only its missing-model error.
    func testDemoWithoutTheModelSaysHowToGetIt() throws {
        try fails(["demo", "--model", "/nonexistent/model.gguf"], ["make model"])
    }
}
