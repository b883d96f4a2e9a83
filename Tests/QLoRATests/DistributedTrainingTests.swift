import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import QLoRA

/// `mpirun -np N qlora train …` (loopback ranks, docs/distributed.md) against the independent
/// reference of the same command in one process with N × --grad-accum: the data-parallel run
/// folds the gradients in the single process's order, so adapters, checkpoints and logged
/// losses / gradient norms are bit for bit the same. Also: two runs repeat bit for bit, a rank
/// that fails to load or is SIGKILLed ends every rank non-zero with no torn checkpoint, ranks
/// that disagree on the run refuse to start, and a checkpoint of N = 2 resumes with N = 3 and 1.
final class DistributedTrainingTests: XCTestCase {
    static let graph = Reference.projectRoot.appendingPathComponent("Graphs/quantized-linear.json").path
    let inF = 32, outF = 24, rows = 24
    var tmp: URL!
    var weights = "", data = ""

    override func setUpWithError() throws {
        _ = try MPIRunner.require()
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-mpi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        var rng = SeededRandom(seed: 23)
        weights = path("w.safetensors")
        let w = try SafeTensorsWriter(url: URL(fileURLWithPath: weights))
        try w.add("proj.weight", floats: rng.floats(outF * inF, scale: 0.2), shape: [outF, inF])
        try w.commit()
        data = path("data.safetensors")
        let d = try SafeTensorsWriter(url: URL(fileURLWithPath: data))
        try d.add("x", floats: rng.floats(rows * inF), shape: [rows, inF])
        try d.add("target", floats: rng.floats(rows * outF), shape: [rows, outF])
        try d.commit()
    }

    override func tearDownWithError() throws { if let tmp { try? FileManager.default.removeItem(at: tmp) } }

    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    /// Everything that carries state or randomness: AdamW, clipping, a cosine schedule with
    /// warm-up, shuffled batches of 2 rows (12 micro-batches an epoch), LoRA dropout.
    func args(_ out: String, accum: Int, _ extra: [String] = []) -> [String] {
        ["train", Self.graph, "--weights", weights, "--data", data, "--loss", "mse", "--optimizer", "adamw", "--lr", "0.02",
         "--weight-decay", "0.01", "--max-grad-norm", "0.5", "--schedule", "cosine", "--warmup", "2", "--batch-size", "2",
         "--rank", "4", "--alpha", "8", "--dropout", "0.1", "--seed", "5", "--threads", "1", "--grad-accum", "\(accum)", "--out", out] + extra
    }

    func bytes(_ dir: String, _ file: String = "adapter_model.safetensors") throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: dir).appendingPathComponent(file))
    }

    func logLines(_ file: String) throws -> [[String: Any]] {
        try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    func single(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 0, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
    }

    func mpi(_ ranks: Int, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CLIRunner.Result {
        let r = try MPIRunner.run(ranks: ranks, args)
        XCTAssertEqual(r.status, 0, "mpirun -np \(ranks) qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// The same loss and gradient norm per step (the numbers as printed), and the rank count.
    func assertSameLog(_ a: String, _ b: String, ranks: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try logLines(a), y = try logLines(b)
        XCTAssertEqual(x.count, y.count, file: file, line: line)
        XCTAssertFalse(x.isEmpty, file: file, line: line)
        for (p, q) in zip(x, y) {
            for key in ["step", "loss", "grad_norm", "lr"] {
                XCTAssertEqual("\(p[key]!)", "\(q[key]!)", "\(key) at step \(p["step"]!)", file: file, line: line)
            }
            XCTAssertEqual(p["ranks"] as? Int, 1, file: file, line: line)
            XCTAssertEqual(q["ranks"] as? Int, ranks, file: file, line: line)
        }
    }

    func testRanksEqualOneProcessWithThatMuchAccumulationBitForBit() throws {
        // 2 ranks × 1 micro-batch = one process with --grad-accum 2; --epochs counts all ranks' batches.
        try single(args(path("one-2"), accum: 2, ["--epochs", "2", "--log-json", path("one-2.jsonl")]))
        let r = try mpi(2, args(path("mpi-2"), accum: 1, ["--epochs", "2", "--log-json", path("mpi-2.jsonl")]))
        XCTAssertEqual(r.stdout.components(separatedBy: "wrote").count - 1, 1, "rank 0 alone reports: \(r.stdout)")
        XCTAssert(r.stdout.contains("to step 12 on 2 ranks"), r.stdout)
        XCTAssertEqual(try bytes(path("mpi-2")), try bytes(path("one-2")), "2 ranks vs --grad-accum 2")
        try assertSameLog(path("one-2.jsonl"), path("mpi-2.jsonl"), ranks: 2)
        // Repeatable: a second 2-rank run gives the same bits.
        _ = try mpi(2, args(path("mpi-2b"), accum: 1, ["--epochs", "2"]))
        XCTAssertEqual(try bytes(path("mpi-2b")), try bytes(path("mpi-2")), "two 2-rank runs")
        // 3 ranks × 2 micro-batches each (the per-rank accumulation too) = --grad-accum 6.
        try single(args(path("one-6"), accum: 6, ["--steps", "5", "--log-json", path("one-6.jsonl")]))
        _ = try mpi(3, args(path("mpi-3"), accum: 2, ["--steps", "5", "--log-json", path("mpi-3.jsonl")]))
        XCTAssertEqual(try bytes(path("mpi-3")), try bytes(path("one-6")), "3 ranks × 2 vs --grad-accum 6")
        try assertSameLog(path("one-6.jsonl"), path("mpi-3.jsonl"), ranks: 3)
        // Only rank 0 wrote: no other files in --out.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("mpi-3")).sorted(), ["adapter_config.json", "adapter_model.safetensors"])
    }

    /// The causal-LM path (--model): micro-batches with different numbers of trained tokens, so
    /// the loss-term weighting matters.
    func testCausalLMRanksEqualOneProcessBitForBit() throws {
        let ids = try Reference.data("interop/causal_lm/input_ids.i64")
        let idValues = ids.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        var labels = idValues
        for t in 0..<4 { labels[7 + t] = -100 }   // row 1 trains 3 of its 7 tokens, row 0 all of them
        let file = tmp.appendingPathComponent("ids.safetensors")
        let w = try SafeTensorsWriter(url: file)
        try w.add("input_ids", dtype: .i64, shape: [2, 7], data: ids)
        try w.add("labels", dtype: .i64, shape: [2, 7], data: labels.withUnsafeBytes { Data($0) })
        try w.commit()
        func lm(_ out: String, accum: Int) -> [String] {
            ["train", "--model", Reference.url("interop/model_bnb4bit").path, "--data", file.path, "--batch-size", "1",
             "--steps", "3", "--optimizer", "adamw", "--lr", "0.01", "--max-grad-norm", "1", "--rank", "4", "--dropout", "0.1",
             "--seed", "3", "--threads", "1", "--grad-accum", "\(accum)", "--out", path(out), "--log-json", path(out + ".jsonl")]
        }
        try single(lm("one", accum: 2))
        _ = try mpi(2, lm("two", accum: 1))
        XCTAssertEqual(try bytes(path("two")), try bytes(path("one")), "causal-LM: 2 ranks vs --grad-accum 2")
        try assertSameLog(path("one.jsonl"), path("two.jsonl"), ranks: 2)
    }

    func testAFailingRankEndsEveryRankWithOneClearError() throws {
        let good = args(path("fail"), accum: 1, ["--steps", "4", "--checkpoint-every", "1"])
        var bad = good
        bad[bad.firstIndex(of: data)!] = path("missing.safetensors")
        let r = try MPIRunner.runEach([[CLIRunner.executable.path] + good, [CLIRunner.executable.path] + bad])
        XCTAssertNotEqual(r.status, 0, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssert(errors.first?.hasPrefix("error: rank 1 of 2: ") == true && errors.first!.contains("missing.safetensors"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("fail/adapter_model.safetensors")))
        // Ranks that would train differently (another seed) refuse before the first step.
        var other = good
        other[other.firstIndex(of: "--seed")! + 1] = "6"
        let d = try MPIRunner.runEach([[CLIRunner.executable.path] + good, [CLIRunner.executable.path] + other])
        XCTAssertNotEqual(d.status, 0)
        XCTAssertEqual(d.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") },
                       ["error: rank 0 of 2: invalid argument: rank 1 of 2 disagrees with rank 0 on the seed (low 32 bits): 6 vs 5 (every rank must run the same command on the same files)"], d.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("fail/checkpoint-1")), "no step was taken")
    }

    /// Rank 1 SIGKILLed mid-run (after rank 0 wrote checkpoint-2): mpirun ends rank 0 and exits
    /// non-zero; every visible checkpoint is complete and loads.
    func testAKilledRankEndsTheJobAndLeavesOnlyCompleteCheckpoints() throws {
        let out = path("killed")
        let command = args(out, accum: 1, ["--steps", "100000", "--checkpoint-every", "1"])
        let quoted = ([CLIRunner.executable.path] + command).map { "'\($0)'" }.joined(separator: " ")
        // Rank 1 runs qlora as a child it kills once checkpoint-2 exists (or after 60 s).
        let killer = "\(quoted) & p=$!; n=0; while [ ! -d '\(out)/checkpoint-2' ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done; kill -9 $p; wait $p"
        let start = Date()
        let r = try MPIRunner.runEach([[CLIRunner.executable.path] + command, ["/bin/sh", "-c", killer]], seconds: 90)
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 80, "mpirun ended the job, not the timeout")
        let fm = FileManager.default
        let names = try fm.contentsOfDirectory(atPath: out)
        let steps = names.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }
        XCTAssert(steps.contains(2), "\(names)")
        for s in steps {
            let c = URL(fileURLWithPath: out).appendingPathComponent("checkpoint-\(s)")
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: c.path).sorted(),
                           ["adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "trainer_state.safetensors"], "checkpoint-\(s)")
            _ = try LoraAdapter(directory: c)
        }
        for name in names where !name.hasPrefix("checkpoint-") { XCTAssert(name.hasPrefix("."), "a killed job left \(name)") }
    }

    /// A checkpoint holds the global step and micro-batch counter, not per-rank state: the 2-rank
    /// checkpoint is the --grad-accum 2 one byte for byte, and resumes with 3 ranks (= one process
    /// resuming with --grad-accum 3) and in one process.
    func testResumeWithAnotherRankCount() throws {
        let steps = ["--steps", "6", "--checkpoint-every", "3"]
        try single(args(path("one"), accum: 2, steps))
        _ = try mpi(2, args(path("two"), accum: 1, steps))
        for file in ["trainer_state.json", "trainer_state.safetensors", "adapter_model.safetensors"] {
            XCTAssertEqual(try bytes(path("two/checkpoint-3"), file), try bytes(path("one/checkpoint-3"), file), file)
        }
        try single(args(path("one-r3"), accum: 3, steps + ["--resume", path("one/checkpoint-3")]))
        let r = try mpi(3, args(path("three"), accum: 1, steps + ["--resume", path("two/checkpoint-3"), "--log-json", path("three.jsonl")]))
        XCTAssert(r.stderr.contains("resumed from \(path("two/checkpoint-3")) at step 3"), r.stderr)
        XCTAssertEqual(try logLines(path("three.jsonl")).map { $0["step"] as! Int }, [4, 5, 6])
        XCTAssertEqual(try bytes(path("three")), try bytes(path("one-r3")), "resumed on 3 ranks vs --grad-accum 3")
        try single(args(path("one-r1"), accum: 1, steps + ["--resume", path("one/checkpoint-3")]))
        try single(args(path("mpi-r1"), accum: 1, steps + ["--resume", path("two/checkpoint-3")]))
        XCTAssertEqual(try bytes(path("mpi-r1")), try bytes(path("one-r1")), "the 2-rank checkpoint resumed in one process")
        XCTAssertNotEqual(try bytes(path("mpi-r1")), try bytes(path("three")), "the rank count (the global batch) matters after the resume")
    }
}
