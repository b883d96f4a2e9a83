import Foundation
import XCTest
@testable import QLoRA

/// `qlora train --memory-budget / --gradient-checkpointing` and `qlora inspect --train` as
/// subprocesses on Graphs/llama-mlp.json (one pre-norm block of Graphs/llama-mlp-stack.json for
/// the segments: its residual add is a cut; the bare MLP's forward is one segment since its
/// gate/up group keeps gate and up) over the interop 4-bit checkpoint: the adapter trained with
/// every segment recomputed is byte for byte the one trained without, inspect shows the segments
/// kept and recomputed with both peaks, and a budget below the minimum is one error line naming it.
final class GradientCheckpointingCLITests: XCTestCase {
    static let mlp = Reference.projectRoot.appendingPathComponent("Graphs/llama-mlp.json").path
    static let block = [Reference.projectRoot.appendingPathComponent("Graphs/llama-mlp-stack.json").path, "--dim", "layers=1"]
    static let bnb = Reference.url("interop/model_bnb4bit/model.safetensors").path

    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CLIRunner.Result {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 0, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    func data() throws -> String {
        var rng = SeededRandom(seed: 4)
        let url = tmp.appendingPathComponent("data.safetensors")
        let w = try SafeTensorsWriter(url: url)
        try w.add("x", tensor: try Tensor(shape: [16, 64], scalars: rng.floats(16 * 64)))
        try w.add("target", tensor: try Tensor(shape: [16, 64], scalars: rng.floats(16 * 64, scale: 0.1)))
        try w.commit()
        return url.path
    }

    func testCheckpointedTrainingWritesTheSameAdapterAndInspectShowsTheSegments() throws {
        let data = try data()
        func train(_ extra: [String], _ name: String) throws -> (Data, String) {
            let out = tmp.appendingPathComponent(name).path
            let r = try ok(["train"] + Self.block + ["--weights", Self.bnb, "--data", data, "--steps", "3", "--optimizer", "adamw", "--lr", "0.01",
                            "--rank", "4", "--threads", "2", "--out", out] + extra)
            return (try Data(contentsOf: URL(fileURLWithPath: out).appendingPathComponent("adapter_model.safetensors")), r.stderr)
        }
        let (plain, quiet) = try train([], "plain")
        XCTAssertFalse(quiet.contains("gradient checkpointing"), quiet)
        let (every, note) = try train(["--gradient-checkpointing"], "every")
        XCTAssertEqual(every, plain, "adapter bytes with every segment recomputed")
        XCTAssertTrue(note.contains("gradient checkpointing: 1 of 3 segments recomputed"), note)
        let (budgeted, _) = try train(["--memory-budget", "64M"], "budget")
        XCTAssertEqual(budgeted, plain, "a budget the plan meets changes nothing")

        let text = try ok(["inspect"] + Self.block + ["--weights", Self.bnb, "--tokens", "16", "--threads", "1", "--train", "--gradient-checkpointing"]).stdout
        for fragment in ["checkpointing: 1 of 3 segments recomputed", "): recomputed (", ": kept (never recomputed)", ".recompute ",
                         "kept vs recomputed (gradient checkpointing): planned peak", "(x·Aᵀ given)", "lora_down(x·Aᵀ)"] {
            XCTAssertTrue(text.contains(fragment), "inspect --train lacks '\(fragment)':\n\(text)")
        }
        let json = try JSONValue.parse(Array(try ok(["inspect"] + Self.block + ["--weights", Self.bnb, "--tokens", "16", "--train",
                                                     "--gradient-checkpointing", "--format", "json"]).stdout.utf8), file: "stdout", field: "$")
        let c = try XCTUnwrap(json["plan"]?["checkpointing"])
        guard case let .array(segments)? = c["segments"] else { return XCTFail("plan.checkpointing.segments is not an array: \(c)") }
        XCTAssertEqual(segments.first?["recomputed"], .bool(true))
        XCTAssertEqual(c["every_segment"], .bool(true))
    }

    func testBudgetsBelowTheMinimumAndBadSizesAreOneErrorLine() throws {
        let data = try data()
        let base = ["train", Self.mlp, "--weights", Self.bnb, "--data", data, "--steps", "1", "--optimizer", "sgd", "--lr", "0.1",
                    "--out", tmp.appendingPathComponent("o").path]
        try CLIRunner.assertUserError(base + ["--memory-budget", "4K"], ["memory budget 4.0 KiB (4096 bytes)", "give a budget of at least"])
        try CLIRunner.assertUserError(base + ["--memory-budget", "lots"], ["--memory-budget", "\"lots\""])
        try CLIRunner.assertUserError(["inspect", Self.mlp, "--weights", Self.bnb, "--memory-budget", "1G"], ["--train"])
    }
}
