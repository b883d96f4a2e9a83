import Foundation
import XCTest
import CQLoRAKernels
@testable import QLoRA

/// `qlora train … --compute-type bf16|f32` on the interop model (the PEFT + torch run
/// `adamw_wd_clip` of ../shared/reference/interop/causal_lm), and a bad value as one error line.
final class BF16TrainCommandTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws { tmp = try makeTempDirectory(self) }

    func train(_ computeType: String, log: String) throws -> CLIRunner.Result {
        let ids = tmp.appendingPathComponent("ids.safetensors")
        if !FileManager.default.fileExists(atPath: ids.path) {
            let w = try SafeTensorsWriter(url: ids)
            try w.add("input_ids", dtype: .i64, shape: [2, 7], data: try Reference.data("interop/causal_lm/input_ids.i64"))
            try w.commit()
        }
        return try CLIRunner.run(["train", Reference.projectRoot.appendingPathComponent("Graphs/llama.json").path,
                                  "--model", Reference.url("interop/model_bnb4bit").path, "--adapter", Reference.url("interop/adapter").path,
                                  "--data", ids.path, "--loss", "causal-lm", "--steps", "5", "--optimizer", "adamw", "--lr", "0.01",
                                  "--weight-decay", "0.01", "--max-grad-norm", "1", "--threads", "2", "--log-json", log,
                                  "--out", tmp.appendingPathComponent("adapter-\(computeType)").path, "--compute-type", computeType])
    }

    func losses(_ log: String) throws -> [Float] {
        try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            Float(try JSONValue.parse(Array($0.utf8), file: "log", field: "$")["loss"]!.doubleValue!)
        }
    }

    func testComputeTypeFlag() throws {
        let ref = try Reference.floats("interop/causal_lm/adamw_wd_clip.losses.f32")
        var runs: [String: [Float]] = [:]
        for type in ["f32", "bf16"] {
            let log = tmp.appendingPathComponent("\(type).jsonl").path
            let r = try train(type, log: log)
            XCTAssertEqual(r.status, 0, r.stderr)
            runs[type] = try losses(log)
            XCTAssertEqual(runs[type]!.count, 5)
        }
        for i in 0..<5 {
            XCTAssertEqual(runs["f32"]![i], ref[i], accuracy: 1e-5 * ref[i], "f32 loss \(i + 1)")
            XCTAssertEqual(runs["bf16"]![i], ref[i], accuracy: BF16TrainingTests.adamLossTolerance * ref[i], "bf16 loss \(i + 1)")
        }
        if cq_bf16_available() != 0 { XCTAssertNotEqual(runs["bf16"]!, runs["f32"]!, "bf16 kernels ran") }
        else { XCTAssertEqual(runs["bf16"]!, runs["f32"]!, "no AVX512-BF16: the f32 kernels") }
    }

    func testBadValueIsOneErrorLine() throws {
        let r = try train("fp8", log: tmp.appendingPathComponent("x.jsonl").path)
        XCTAssertEqual(r.status, 1, r.stderr)
        try CLIRunner.assertUserError(["train", "--model", Reference.url("interop/model_bnb4bit").path, "--compute-type", "fp8", "--steps", "1",
                                       "--out", tmp.path], ["'fp8'", "--compute-type"])
        try CLIRunner.assertUserError(["generate", "--model", Reference.url("interop/model_bnb4bit").path, "--compute-type", "half"],
                                      ["'half'", "--compute-type"])
    }
}
