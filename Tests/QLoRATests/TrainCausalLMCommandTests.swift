import Foundation
import XCTest
@testable import QLoRA

/// `qlora train Graphs/llama.json --model … --loss causal-lm` against PEFT + torch: the interop
/// model with its adapter, the manifest's `adamw_wd_clip` run (AdamW lr 1e-2, weight decay 0.01,
/// clip 1.0, 5 steps on input_ids.i64): the logged losses and pre-clip norms, and the saved adapter.
final class TrainCausalLMCommandTests: XCTestCase {
    static let dir = "interop/causal_lm"
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-train-lm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func idsFile() throws -> String {
        let url = tmp.appendingPathComponent("ids.safetensors")
        let w = try SafeTensorsWriter(url: url)
        try w.add("input_ids", dtype: .i64, shape: [2, 7], data: try Reference.data("\(Self.dir)/input_ids.i64"))
        try w.commit()
        return url.path
    }

    func testTrainMatchesTorchsAdamWWithClipping() throws {
        let out = tmp.appendingPathComponent("adapter").path, log = tmp.appendingPathComponent("log.jsonl").path
        let r = try CLIRunner.run(["train", Reference.projectRoot.appendingPathComponent("Graphs/llama.json").path,
                                   "--model", Reference.url("interop/model_bnb4bit").path, "--adapter", Reference.url("interop/adapter").path,
                                   "--data", try idsFile(), "--loss", "causal-lm", "--steps", "5", "--optimizer", "adamw", "--lr", "0.01",
                                   "--weight-decay", "0.01", "--max-grad-norm", "1", "--threads", "2", "--log-json", log, "--out", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 5)
        let losses = try Reference.floats("\(Self.dir)/adamw_wd_clip.losses.f32"), norms = try Reference.floats("\(Self.dir)/adamw_wd_clip.grad_norms.f32")
        for (i, line) in lines.enumerated() {
            let j = try JSONValue.parse(Array(line.utf8), file: "log", field: "$")
            XCTAssertEqual(Float(j["loss"]!.doubleValue!), losses[i], accuracy: 1e-5 * losses[i], "loss \(i + 1)")
            XCTAssertEqual(Float(j["grad_norm"]!.doubleValue!), norms[i], accuracy: 1e-5 * norms[i], "grad_norm \(i + 1)")
        }
        let saved = try LoraAdapter(directory: URL(fileURLWithPath: out))
        let final = try SafeTensorsFile(url: Reference.url("\(Self.dir)/adamw_wd_clip.final.safetensors"))
        XCTAssertEqual(saved.config.r, 8)
        var compared = 0
        for (module, w) in saved.modules {
            let a = try final.tensor("base_model.model.\(module).lora_A.weight").scalars, b = try final.tensor("base_model.model.\(module).lora_B.weight").scalars
            XCTAssertLessThanOrEqual(zip(w.a.scalars, a).map { abs($0 - $1) }.max()!, 1e-4, "\(module).lora_A")
            XCTAssertLessThanOrEqual(zip(w.b.scalars, b).map { abs($0 - $1) }.max()!, 1e-4, "\(module).lora_B")
            compared += 1
        }
        XCTAssertEqual(compared, 3)
    }

    func testUserErrors() throws {
        let model = Reference.url("interop/model_bnb4bit").path
        try CLIRunner.assertUserError(["train", "--model", model, "--data", try idsFile(), "--optimizer", "adamw", "--lr", "0.01", "--out", tmp.path],
                                      ["--steps", "--epochs"])
        try CLIRunner.assertUserError(["train", "--model", model, "--data", try idsFile(), "--steps", "1", "--optimizer", "adamw", "--lr", "0.01",
                                       "--loss", "mse", "--out", tmp.path], ["causal-lm"])
        try CLIRunner.assertUserError(["train", "--model", model, "--data", try idsFile(), "--steps", "1", "--optimizer", "adamw", "--lr", "0.01",
                                       "--target-modules", "mlp", "--out", tmp.path], ["mlp"])
        try CLIRunner.assertUserError(["train", "--model", model, "--data", tmp.appendingPathComponent("x.jsonl").path, "--steps", "1",
                                       "--optimizer", "adamw", "--lr", "0.01", "--out", tmp.path], ["x.jsonl"])
    }
}
