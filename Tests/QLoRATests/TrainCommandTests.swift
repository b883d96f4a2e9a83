import Foundation
import XCTest
@testable import QLoRA

/// `qlora train` run as a subprocess on Graphs/quantized-linear.json over an f32 checkpoint
/// written here (quantized at load): the loss falls, --log-json has one line per step, the saved
/// PEFT adapter loads and `qlora run --adapter` reproduces the library forward, one SGD step
/// equals A − lr·grad bit for bit, and bad inputs are one `error:` line.
final class TrainCommandTests: XCTestCase {
    static let graph = Reference.projectRoot.appendingPathComponent("Graphs/quantized-linear.json").path
    let inF = 32, outF = 24, m = 16

    var tmp: URL!
    var weights = ""
    var x = Tensor.zeros(shape: [1])

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        var rng = SeededRandom(seed: 3)
        weights = try write("w.safetensors", ["proj.weight": try Tensor(shape: [outF, inF], scalars: rng.floats(outF * inF, scale: 0.2))])
        x = try Tensor(shape: [m, inF], scalars: rng.floats(m * inF))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    func write(_ name: String, _ tensors: [String: Tensor]) throws -> String {
        let w = try SafeTensorsWriter(url: tmp.appendingPathComponent(name))
        for (k, t) in tensors { try w.add(k, tensor: t) }
        try w.commit()
        return path(name)
    }

    func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CLIRunner.Result {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 0, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// A PEFT adapter directory for module "proj".
    func adapter(_ name: String, r: Int, alpha: Double, a: [Float], b: [Float]) throws -> String {
        let config = LoraAdapterConfig(r: r, loraAlpha: alpha, targetModules: ["proj"])
        try LoraAdapter(config: config, weights: ["proj": (try Tensor(shape: [r, inF], scalars: a), try Tensor(shape: [outF, r], scalars: b))])
            .write(to: tmp.appendingPathComponent(name))
        return path(name)
    }

    /// Data whose target is the output of a rank-2 teacher adapter (scaling 1).
    func teacherData() throws -> String {
        var rng = SeededRandom(seed: 9)
        let teacher = try adapter("teacher", r: 2, alpha: 2, a: rng.floats(2 * inF, scale: 0.5), b: rng.floats(outF * 2, scale: 0.5))
        let input = try write("x.safetensors", ["x": x])
        let y = path("y.safetensors")
        _ = try ok(["run", Self.graph, "--weights", weights, "--adapter", teacher, "--input", input, "--output", y])
        let target = try SafeTensorsFile(url: URL(fileURLWithPath: y)).tensor("y")
        return try write("data.safetensors", ["x": x, "target": target])
    }

    /// The library's forward of the graph with `adapter` on `x`.
    func libraryForward(adapter: LoraAdapter) throws -> Tensor {
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: Self.graph))
        let loaded = try def.load(weights: try CheckpointWeights(url: URL(fileURLWithPath: weights)),
                                  options: GraphLoadOptions(inputShapes: ["x": x.shape], adapter: adapter))
        return try loaded.graph.compile(CompileOptions(threads: 2)).run(["x": x])["y"]!
    }

    func testSGDAndAdamWLearnTheTeacherAndTheAdapterRunsBack() throws {
        let data = try teacherData()
        for (name, options) in [("sgd", ["--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9"]),
                                ("adamw", ["--optimizer", "adamw", "--lr", "0.01", "--weight-decay", "0"])] {
            let out = path("out-\(name)"), log = path("log-\(name).jsonl"), steps = 200
            let r = try ok(["train", Self.graph, "--weights", weights, "--data", data, "--loss", "mse", "--steps", "\(steps)",
                            "--rank", "4", "--alpha", "8", "--seed", "5", "--threads", "2", "--log-json", log, "--out", out] + options)
            XCTAssert(r.stderr.contains("step 1/\(steps) loss"), r.stderr)
            XCTAssert(r.stdout.contains("wrote \(out)"), r.stdout)
            // One well-formed JSON object per step.
            let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(lines.count, steps, name)
            var losses: [Double] = []
            for (i, line) in lines.enumerated() {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                XCTAssertEqual(object["step"] as? Int, i + 1)
                for key in ["loss", "lr", "grad_norm", "tokens_per_s"] { XCTAssertNotNil(object[key] as? Double, "\(name) \(key) in \(line)") }
                XCTAssertEqual(object["lr"] as! Double, name == "sgd" ? 0.05 : 0.01, accuracy: 1e-7)
                XCTAssertGreaterThanOrEqual(object["grad_norm"] as! Double, 0)
                losses.append(object["loss"] as! Double)
            }
            XCTAssertGreaterThan(losses[0], 0)
            XCTAssertLessThan(losses.last!, 0.1 * losses[0], "\(name): \(losses[0]) → \(losses.last!)")
            // The adapter loads, and `qlora run --adapter` gives the library's forward with it.
            let trained = try LoraAdapter(directory: URL(fileURLWithPath: out))
            XCTAssertEqual(trained.config.r, 4)
            XCTAssertEqual(trained.config.loraAlpha, 8)
            XCTAssertEqual(trained.modules["proj"]?.a.shape, [4, inF])
            XCTAssertEqual(trained.modules["proj"]?.b.shape, [outF, 4])
            let keys = try SafeTensorsFile(url: URL(fileURLWithPath: out).appendingPathComponent("adapter_model.safetensors")).names.sorted()
            XCTAssertEqual(keys, ["base_model.model.proj.lora_A.weight", "base_model.model.proj.lora_B.weight"])
            let y = path("y-\(name).safetensors")
            _ = try ok(["run", Self.graph, "--weights", weights, "--adapter", out, "--input", try write("x-\(name).safetensors", ["x": x]),
                        "--output", y, "--threads", "2"])
            let expected = try libraryForward(adapter: trained)
            assertBitIdentical(try SafeTensorsFile(url: URL(fileURLWithPath: y)).tensor("y").scalars, expected.scalars, "\(name): run --adapter OUT vs library")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
            XCTAssertEqual(leftovers, ["adapter_config.json", "adapter_model.safetensors"], "no temporary files")
        }
    }

    /// Three linears (llama-mlp) over the bitsandbytes 4-bit reference checkpoint, the target from
    /// the reference PEFT adapter: AdamW from fresh adapters learns it, and every module is saved.
    func testLlamaMLPOverTheFourBitCheckpoint() throws {
        let interop = Reference.url("interop")
        let bnb = interop.appendingPathComponent("model_bnb4bit/model.safetensors").path
        let mlp = Reference.projectRoot.appendingPathComponent("Graphs/llama-mlp.json").path
        let x2 = try Reference.tensor("interop/expected/x2d.f32", shape: [3, 64])
        let y = path("y-mlp.safetensors")
        _ = try ok(["run", mlp, "--weights", bnb, "--adapter", interop.appendingPathComponent("adapter").path,
                    "--input", try write("x-mlp.safetensors", ["x": x2]), "--output", y])
        let data = try write("mlp.safetensors", ["x": x2, "target": try SafeTensorsFile(url: URL(fileURLWithPath: y)).tensor("y")])
        let out = path("mlp-out"), log = path("mlp.jsonl")
        _ = try ok(["train", mlp, "--weights", bnb, "--data", data, "--loss", "mse", "--steps", "40", "--optimizer", "adamw", "--lr", "0.01",
                    "--rank", "8", "--alpha", "16", "--threads", "2", "--log-json", log, "--out", out])
        let losses = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double
        }
        XCTAssertEqual(losses.count, 40)
        XCTAssertLessThan(losses.last!, 0.1 * losses[0], "\(losses[0]) → \(losses.last!)")
        let trained = try LoraAdapter(directory: URL(fileURLWithPath: out))
        XCTAssertEqual(trained.modules.keys.sorted(), ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"])
        XCTAssertEqual(trained.config.targetModules, ["down_proj", "gate_proj", "up_proj"])
        // --target-modules (PEFT suffix matching): only those linears train and are saved.
        let some = path("mlp-some")
        _ = try ok(["train", mlp, "--weights", bnb, "--data", data, "--loss", "mse", "--steps", "3", "--optimizer", "adamw", "--lr", "0.01",
                    "--rank", "8", "--alpha", "16", "--target-modules", "up_proj,mlp.down_proj", "--out", some])
        let partial = try LoraAdapter(directory: URL(fileURLWithPath: some))
        XCTAssertEqual(partial.modules.keys.sorted(), ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.up_proj"])
        XCTAssertEqual(partial.config.targetModules, ["down_proj", "up_proj"])
    }

    func testOneSGDStepFromAKnownAdapterIsAMinusLrGrad() throws {
        let data = try teacherData()
        var rng = SeededRandom(seed: 21)
        let a0 = rng.floats(4 * inF, scale: 0.3), b0 = rng.floats(outF * 4, scale: 0.3)
        let start = try adapter("start", r: 4, alpha: 8, a: a0, b: b0)
        let out = path("one-step")
        _ = try ok(["train", Self.graph, "--weights", weights, "--data", data, "--steps", "1", "--optimizer", "sgd", "--lr", "0.1",
                    "--adapter", start, "--threads", "1", "--log-json", path("one.jsonl"), "--out", out])
        // The library's gradient at the start adapter (same loading path, no optimizer).
        let def = try GraphDefinition.load(url: URL(fileURLWithPath: Self.graph))
        let loaded = try def.load(weights: try CheckpointWeights(url: URL(fileURLWithPath: weights)),
                                  options: GraphLoadOptions(inputShapes: ["x": x.shape], adapter: try LoraAdapter(directory: URL(fileURLWithPath: start))))
        let layer = loaded.layers["proj"]!
        let store = try ParameterStore(gathering: layer.trainableParameters)
        let g = loaded.graph
        let target = try SafeTensorsFile(url: URL(fileURLWithPath: data)).tensor("target")
        let loss = try g.mseLoss(g.output(named: "y")!, target: g.input("target", shape: target.shape))
        g.output("loss", loss)
        try g.backward(from: loss, parameters: store)
        _ = try g.compile(CompileOptions(threads: 1)).run(["x": x, "target": target])
        let gA = store.gradients[0].tensor.scalars, gB = store.gradients[1].tensor.scalars
        XCTAssert(gA.contains { $0 != 0 } && gB.contains { $0 != 0 })
        let lr: Float = 0.1
        // grad_norm is the global L2 norm of these gradients (a float32 value, as torch's clip_grad_norm_ computes it).
        let line = try String(contentsOfFile: path("one.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(line.count, 1)
        let logged = try JSONSerialization.jsonObject(with: Data(line[0].utf8)) as! [String: Any]
        let norm = (gA + gB).reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        XCTAssertEqual(logged["grad_norm"] as! Double, norm, accuracy: 3e-7 * max(1, norm))
        let trained = try LoraAdapter(directory: URL(fileURLWithPath: out)).modules["proj"]!
        assertBitIdentical(trained.a.scalars, zip(a0, gA).map { $0 - lr * $1 }, "A - lr·grad_A")
        assertBitIdentical(trained.b.scalars, zip(b0, gB).map { $0 - lr * $1 }, "B - lr·grad_B")
    }

    /// `--profile` prints the step table to stderr (one fused linear and its backward per step) and
    /// changes no bit of the trained adapter.
    func testProfilePrintsStepTimesAndChangesNothing() throws {
        let data = try teacherData()
        let base = ["train", Self.graph, "--weights", weights, "--data", data, "--loss", "mse", "--steps", "3", "--optimizer", "adamw",
                    "--lr", "0.01", "--threads", "2"]
        let plain = try ok(base + ["--out", path("plain")])
        XCTAssertFalse(plain.stderr.contains("step profile"))
        let profiled = try ok(base + ["--out", path("profiled"), "--profile"])
        XCTAssert(profiled.stderr.contains("step profile:") && profiled.stderr.contains("over 3 run(s)"), profiled.stderr)
        XCTAssert(profiled.stderr.contains("fused_qlora_linear"), profiled.stderr)
        for file in ["adapter_model.safetensors", "adapter_config.json"] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path("plain/" + file))),
                           try Data(contentsOf: URL(fileURLWithPath: path("profiled/" + file))), file)
        }
    }

    func testBadInputsAreOneErrorLine() throws {
        let data = try teacherData()
        let out = path("out")
        let base = ["train", Self.graph, "--weights", weights, "--optimizer", "sgd", "--out", out]
        let noTarget = try write("no-target.safetensors", ["x": x])
        let noX = try write("no-x.safetensors", ["target": Tensor.zeros(shape: [m, outF])])
        let badTarget = try write("bad-target.safetensors", ["x": x, "target": Tensor.zeros(shape: [m, outF + 1])])
        try CLIRunner.assertUserError(base + ["--data", noTarget, "--steps", "2", "--lr", "0.1"], ["no-target.safetensors", "target"])
        try CLIRunner.assertUserError(base + ["--data", noX, "--steps", "2", "--lr", "0.1"], ["no-x.safetensors", "'x'"])
        try CLIRunner.assertUserError(base + ["--data", badTarget, "--steps", "2", "--lr", "0.1"], ["target", "[16, 25]", "[16, 24]"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps", "2", "--lr", "nan"], ["--lr", "nan"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps", "2", "--lr", "inf"], ["--lr", "inf"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps", "0", "--lr", "0.1"], ["--steps", "0"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps=-3", "--lr", "0.1"], ["--steps", "-3"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps", "2", "--lr", "0.1", "--weight-decay", "0.1"], ["--weight-decay", "sgd"])
        try CLIRunner.assertUserError(["train", Self.graph, "--weights", weights, "--optimizer", "sgd", "--data", data, "--steps", "2", "--lr", "0.1",
                                       "--out", "/nonexistent/dir/out"], ["/nonexistent/dir/out", "does not exist"])
        try CLIRunner.assertUserError(base + ["--data", data, "--steps", "2", "--lr", "0.1", "--adapter", out, "--rank", "4"], ["--adapter", "--rank"])
        try CLIRunner.assertUserError(["train", Self.graph, "--weights", weights, "--optimizer", "adamw", "--data", data, "--steps", "2", "--lr", "0.1",
                                       "--momentum", "0.9", "--out", out], ["--momentum", "adamw"])
        let file = try write("file.safetensors", ["x": x])
        try CLIRunner.assertUserError(["train", Self.graph, "--weights", weights, "--optimizer", "sgd", "--data", data, "--steps", "2", "--lr", "0.1",
                                       "--out", file], [file, "not a directory"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no output after a failed train")
    }

    /// The full flag set: batches, accumulation, clipping, cosine schedule with warm-up, dropout,
    /// target modules, checkpoints; --resume from a checkpoint and --threads 2 end with the same bits.
    func testFullFlagSetResumesAndThreadsToTheSameBits() throws {
        let data = try teacherData()
        func train(_ out: String, threads: Int, extra: [String] = []) throws -> [[String: Any]] {
            let log = path("\((out as NSString).lastPathComponent).jsonl")
            _ = try ok(["train", Self.graph, "--weights", weights, "--data", data, "--loss", "mse", "--steps", "6", "--optimizer", "adamw",
                        "--lr", "0.02", "--weight-decay", "0.01", "--max-grad-norm", "0.5", "--grad-accum", "2", "--schedule", "cosine",
                        "--warmup", "2", "--batch-size", "4", "--rank", "4", "--alpha", "8", "--dropout", "0.1", "--target-modules", "proj",
                        "--seed", "5", "--threads", "\(threads)", "--log-json", log, "--out", out] + extra)
            return try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }
        }
        let full = path("full")
        let logs = try train(full, threads: 1, extra: ["--checkpoint-every", "3"])
        XCTAssertEqual(logs.map { $0["step"] as! Int }, [1, 2, 3, 4, 5, 6])
        // Cosine with 2 warm-up steps over 6 (transformers: step k uses multiplier(k - 1)).
        let lrs = logs.map { $0["lr"] as! Double }
        let expected = (0..<6).map { s -> Double in s < 2 ? 0.02 * Double(s) / 2 : 0.02 * 0.5 * (1 + cos(Double.pi * Double(s - 2) / 4)) }
        for (a, b) in zip(lrs, expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        for f in ["checkpoint-3", "checkpoint-6"] {
            XCTAssert(FileManager.default.fileExists(atPath: (full as NSString).appendingPathComponent(f) + "/trainer_state.json"), f)
        }
        let final = try LoraAdapter(directory: URL(fileURLWithPath: full)).modules["proj"]!
        let resumed = path("resumed")
        let resumedLogs = try train(resumed, threads: 1, extra: ["--resume", (full as NSString).appendingPathComponent("checkpoint-3")])
        XCTAssertEqual(resumedLogs.map { $0["step"] as! Int }, [4, 5, 6])
        XCTAssertEqual(resumedLogs.map { $0["loss"] as! Double }, logs.suffix(3).map { $0["loss"] as! Double })
        let r = try LoraAdapter(directory: URL(fileURLWithPath: resumed)).modules["proj"]!
        assertBitIdentical(r.a.scalars, final.a.scalars, "resumed A")
        assertBitIdentical(r.b.scalars, final.b.scalars, "resumed B")
        let two = path("two")
        _ = try train(two, threads: 2)
        let t = try LoraAdapter(directory: URL(fileURLWithPath: two)).modules["proj"]!
        assertBitIdentical(t.a.scalars, final.a.scalars, "2 threads A")
        assertBitIdentical(t.b.scalars, final.b.scalars, "2 threads B")
    }

    func testNewFlagsRejectBadValues() throws {
        let data = try teacherData()
        let base = ["train", Self.graph, "--weights", weights, "--data", data, "--optimizer", "adamw", "--lr", "0.01", "--steps", "2", "--out", path("o")]
        try CLIRunner.assertUserError(base + ["--target-modules", "nope"], ["'nope'", "proj"])
        try CLIRunner.assertUserError(base + ["--dropout", "1"], ["--dropout", "1"])
        try CLIRunner.assertUserError(base + ["--grad-accum", "0"], ["--grad-accum", "0"])
        try CLIRunner.assertUserError(base + ["--warmup", "3"], ["--warmup", "3"])
        try CLIRunner.assertUserError(base + ["--max-grad-norm", "0"], ["--max-grad-norm"])
        try CLIRunner.assertUserError(base + ["--batch-size", "17"], ["--batch-size", "17", "16 rows"])
        try CLIRunner.assertUserError(base + ["--resume", tmp.path], ["--resume", "trainer_state.json"])
        try CLIRunner.assertUserError(base + ["--loss", "causal-lm"], ["causal-lm"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o")))
    }

    /// Merging into a plain f32 checkpoint quantizes it first (as train did at load), so the merged
    /// weight reproduces `qlora run` with the adapter; merging into the original f32 weight would not.
    func testMergeIntoAPlainCheckpointUsesTheQuantizedBase() throws {
        var rng = SeededRandom(seed: 13)
        let lora = try adapter("lora", r: 4, alpha: 8, a: rng.floats(4 * inF, scale: 0.3), b: rng.floats(outF * 4, scale: 0.3))
        let input = try write("in.safetensors", ["x": x])
        _ = try ok(["run", Self.graph, "--weights", weights, "--adapter", lora, "--input", input, "--output", path("y.safetensors")])
        let y = try SafeTensorsFile(url: URL(fileURLWithPath: path("y.safetensors"))).tensor("y").scalars
        _ = try ok(["merge", "--weights", weights, "--adapter", lora, "-o", path("merged.safetensors")])
        let merged = try SafeTensorsFile(url: URL(fileURLWithPath: path("merged.safetensors"))).tensor("proj.weight").scalars
        let original = try SafeTensorsFile(url: URL(fileURLWithPath: weights)).tensor("proj.weight").scalars
        func outputs(_ w: [Float]) -> [Float] {
            (0..<(m * outF)).map { idx in
                let i = idx / outF, o = idx % outF
                return Float((0..<inF).reduce(0.0) { $0 + Double(x.scalars[i * inF + $1]) * Double(w[o * inF + $1]) })
            }
        }
        let scale = y.map(abs).max()!
        let mergedError = zip(outputs(merged), y).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(mergedError, 1e-5 * scale, "merged into dequant(W4)")
        // The wrong base: the original f32 weight plus the same update misses by the quantization error.
        let delta = zip(merged, try QuantizedTensor.quantize(Tensor(shape: [outF, inF], scalars: original), quantType: .nf4, blockSize: 64,
                                                             doubleQuant: true, name: "w").dequantize(threads: 1).scalars).map { $0 - $1 }
        let wrongError = zip(outputs(zip(original, delta).map { $0 + $1 }), y).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(wrongError, 100 * max(mergedError, 1e-7 * scale))
    }
}
