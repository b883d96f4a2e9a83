import Foundation
import XCTest
@testable import QLoRA

/// `qlora train --model SmolLM2 --data x.jsonl --seq-len N --packing`: the first step's loss over
/// the same examples equals the padded run's (one batch holding every example either way: the
/// mean over the same trained tokens), with fewer tokens per batch; and the flag's user errors.
final class PackedTrainCommandTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-packing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func dataFile() throws -> String {
        let lines = [#"{"prompt": "Who makes the Larkspur Q7 kettle?", "completion": " Tessellate Labs, in Tromsø."}"#,
                     #"{"text": "Tea is best at 80 degrees."}"#,
                     #"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! Happy brewing!"}]}"#,
                     #"{"prompt": "2 + 2 =", "completion": " 4"}"#]
        let url = tmp.appendingPathComponent("x.jsonl")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func firstStep(_ extra: [String]) throws -> (loss: Double, stderr: String) {
        let model = GGUFSmolLM2Tests.modelFile.path, log = tmp.appendingPathComponent("log-\(UUID().uuidString).jsonl").path
        let r = try CLIRunner.run(["train", "--model", model, "--data", try dataFile(), "--steps", "1", "--optimizer", "adamw", "--lr", "0.001",
                                   "--batch-size", "8", "--threads", "2", "--log-json", log, "--out", tmp.appendingPathComponent("adapter").path] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")[0]
        return (try JSONValue.parse(Array(line.utf8), file: "log", field: "$")["loss"]!.doubleValue!, r.stderr)
    }

    func testPackedFirstLossEqualsPadded() throws {
        guard FileManager.default.fileExists(atPath: GGUFSmolLM2Tests.modelFile.path) else { throw XCTSkip("SmolLM2 GGUF absent: run `make model`") }
        let padded = try firstStep(["--seq-len", "96"]), packed = try firstStep(["--seq-len", "96", "--packing"])
        XCTAssertEqual(packed.loss, padded.loss, accuracy: 1e-5 * padded.loss, "the mean over the same trained tokens")
        XCTAssert(packed.stderr.contains("1 batch,"), packed.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("adapter/adapter_model.safetensors").path))
    }

    func testPackingUserErrors() throws {
        let model = Reference.url("interop/model_bnb4bit").path
        try CLIRunner.assertUserError(["train", "--model", model, "--data", try dataFile(), "--steps", "1", "--optimizer", "adamw", "--lr", "0.01",
                                       "--packing", "--out", tmp.path], ["--packing", "--seq-len"])
        let ids = tmp.appendingPathComponent("ids.safetensors")
        let w = try SafeTensorsWriter(url: ids)
        try w.add("input_ids", dtype: .i64, shape: [2, 7], data: try Reference.data("interop/causal_lm/input_ids.i64"))
        try w.commit()
        try CLIRunner.assertUserError(["train", "--model", model, "--data", ids.path, "--steps", "1", "--optimizer", "adamw", "--lr", "0.01",
                                       "--seq-len", "8", "--packing", "--out", tmp.path], ["--packing", "JSONL"])
    }
}
