import Foundation
import XCTest
@testable import QLoRA

/// `mpirun -np N qlora train` with the gradient reduction overlapped with the backward (the
/// default, docs/distributed.md "Overlap") against two independent references: the same command
/// with --no-overlap (the reduction after the backward) and one process with --grad-accum N·k.
/// Small --bucket-size values cut the tiny models' gradients into several buckets, so the
/// communication thread really sends bucket after bucket while the backward runs. Also: the
/// fallback when the MPI library provides no MPI_THREAD_SERIALIZED.
final class OverlappedReductionTests: XCTestCase {
    static let graph = Reference.projectRoot.appendingPathComponent("Graphs/quantized-linear.json").path
    var tmp: URL!
    var weights = "", data = "", lmData = ""

    override func setUpWithError() throws {
        _ = try MPIRunner.require()
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-overlap-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        var rng = SeededRandom(seed: 31)
        weights = path("w.safetensors")
        let w = try SafeTensorsWriter(url: URL(fileURLWithPath: weights))
        try w.add("proj.weight", floats: rng.floats(24 * 32, scale: 0.2), shape: [24, 32])
        try w.commit()
        data = path("data.safetensors")
        let d = try SafeTensorsWriter(url: URL(fileURLWithPath: data))
        try d.add("x", floats: rng.floats(24 * 32), shape: [24, 32])
        try d.add("target", floats: rng.floats(24 * 24), shape: [24, 24])
        try d.commit()
        let ids = try Reference.data("interop/causal_lm/input_ids.i64")
        var labels = ids.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        for t in 0..<4 { labels[7 + t] = -100 }   // micro-batches with different trained-token counts
        lmData = path("ids.safetensors")
        let l = try SafeTensorsWriter(url: URL(fileURLWithPath: lmData))
        try l.add("input_ids", dtype: .i64, shape: [2, 7], data: ids)
        try l.add("labels", dtype: .i64, shape: [2, 7], data: labels.withUnsafeBytes { Data($0) })
        try l.commit()
    }

    override func tearDownWithError() throws { if let tmp { try? FileManager.default.removeItem(at: tmp) } }

    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    /// The mse graph path: AdamW, clipping, a schedule, shuffling and dropout (A and B of one
    /// LoRA layer: 896 bytes of gradients; 256-byte buckets make 2).
    func mse(_ out: String, accum: Int, threads: Int, _ extra: [String] = []) -> [String] {
        ["train", Self.graph, "--weights", weights, "--data", data, "--loss", "mse", "--optimizer", "adamw", "--lr", "0.02",
         "--max-grad-norm", "0.5", "--schedule", "cosine", "--warmup", "1", "--batch-size", "2", "--rank", "4", "--dropout", "0.1",
         "--seed", "7", "--steps", "3", "--threads", "\(threads)", "--grad-accum", "\(accum)", "--bucket-size", "256",
         "--out", path(out), "--log-json", path(out + ".jsonl")] + extra
    }

    /// The causal-LM path (LoRA on every projection of the tiny Llama; 4K buckets make several).
    func lm(_ out: String, accum: Int, threads: Int, _ extra: [String] = []) -> [String] {
        ["train", "--model", Reference.url("interop/model_bnb4bit").path, "--data", lmData, "--batch-size", "1", "--steps", "2",
         "--optimizer", "adamw", "--lr", "0.01", "--max-grad-norm", "1", "--rank", "4", "--dropout", "0.1", "--seed", "3",
         "--threads", "\(threads)", "--grad-accum", "\(accum)", "--bucket-size", "4K", "--out", path(out), "--log-json", path(out + ".jsonl")] + extra
    }

    func adapter(_ dir: String) throws -> Data {
        try Data(contentsOf: tmp.appendingPathComponent(dir).appendingPathComponent("adapter_model.safetensors"))
    }

    func log(_ name: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path(name + ".jsonl"), encoding: .utf8).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    func single(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try CLIRunner.run(args)
        XCTAssertEqual(r.status, 0, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
    }

    @discardableResult
    func mpi(_ ranks: Int, _ args: [String], environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) throws -> CLIRunner.Result {
        let r = try MPIRunner.run(ranks: ranks, args, extraEnvironment: environment)
        XCTAssertEqual(r.status, 0, "mpirun -np \(ranks) qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        return r
    }

    /// Overlapped = not overlapped = one process, in adapter bytes and in logged loss / grad norm.
    func assertSame(_ overlapped: String, _ after: String, _ one: String, overlap: Bool = true,
                    file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(try adapter(overlapped), try adapter(one), "\(overlapped) vs one process \(one)", file: file, line: line)
        XCTAssertEqual(try adapter(after), try adapter(one), "\(after) vs one process \(one)", file: file, line: line)
        let a = try log(overlapped), b = try log(after), c = try log(one)
        XCTAssertEqual(a.count, c.count, file: file, line: line)
        for (x, (y, z)) in zip(a, zip(b, c)) {
            for key in ["loss", "grad_norm"] {
                XCTAssertEqual("\(x[key]!)", "\(z[key]!)", "\(overlapped) \(key)", file: file, line: line)
                XCTAssertEqual("\(y[key]!)", "\(z[key]!)", "\(after) \(key)", file: file, line: line)
            }
            XCTAssertEqual(x["overlap"] as? Bool, overlap, file: file, line: line)
            XCTAssertEqual(y["overlap"] as? Bool, false, file: file, line: line)
            XCTAssertNotNil(x["reduce_wait_ms"] as? Double, file: file, line: line)
            XCTAssertNil(z["reduce_wait_ms"], "one process logs no reduction", file: file, line: line)
        }
    }

    func testMSEOverlappedEqualsAfterBackwardAndOneProcessBitForBit() throws {
        for threads in [1, 2] {
            // 2 ranks × 2 micro-batches = --grad-accum 4; 3 ranks × 1 = --grad-accum 3.
            for (ranks, perRank) in [(2, 2), (3, 1)] {
                let tag = "\(ranks)x\(perRank)-t\(threads)"
                try single(mse("one-\(tag)", accum: ranks * perRank, threads: threads))
                try mpi(ranks, mse("ov-\(tag)", accum: perRank, threads: threads))
                try mpi(ranks, mse("after-\(tag)", accum: perRank, threads: threads, ["--no-overlap"]))
                try assertSame("ov-\(tag)", "after-\(tag)", "one-\(tag)")
            }
        }
    }

    func testCausalLMOverlappedEqualsAfterBackwardAndOneProcessBitForBit() throws {
        for (ranks, perRank, threads) in [(2, 1, 1), (2, 1, 2), (3, 1, 2)] {
            let tag = "\(ranks)x\(perRank)-t\(threads)"
            try single(lm("one-\(tag)", accum: ranks * perRank, threads: threads))
            try mpi(ranks, lm("ov-\(tag)", accum: perRank, threads: threads))
            try mpi(ranks, lm("after-\(tag)", accum: perRank, threads: threads, ["--no-overlap"]))
            try assertSame("ov-\(tag)", "after-\(tag)", "one-\(tag)")
        }
    }

    /// An MPI library without MPI_THREAD_SERIALIZED (simulated: MPI_THREAD_SINGLE requested):
    /// one note, the reduction after the backward, the same bits.
    func testWithoutThreadSupportTheReductionRunsAfterTheBackwardWithOneNote() throws {
        try single(mse("one", accum: 2, threads: 1))
        try mpi(2, mse("after", accum: 1, threads: 1, ["--no-overlap"]))
        let r = try mpi(2, mse("fallback", accum: 1, threads: 1), environment: ["QLORA_MPI_THREAD_SINGLE": "1"])
        let notes = r.stderr.split(separator: "\n").filter { $0.contains("MPI_THREAD_SERIALIZED") }
        XCTAssertEqual(notes.count, 1, r.stderr)
        XCTAssert(notes.first?.hasPrefix("note: ") == true && notes.first!.contains("without overlap"), r.stderr)
        try assertSame("fallback", "after", "one", overlap: false)
        // With thread support, no note; --no-overlap asks for none either.
        let quiet = try mpi(2, mse("ov", accum: 1, threads: 1))
        XCTAssertFalse(quiet.stderr.contains("MPI_THREAD_SERIALIZED"), quiet.stderr)
        let off = try mpi(2, mse("off", accum: 1, threads: 1, ["--no-overlap"]), environment: ["QLORA_MPI_THREAD_SINGLE": "1"])
        XCTAssertFalse(off.stderr.contains("MPI_THREAD_SERIALIZED"), off.stderr)
    }

    func testABadBucketSizeIsRefused() throws {
        let r = try CLIRunner.run(mse("bad", accum: 1, threads: 1, ["--bucket-size", "0"]))
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.stderr.contains("--bucket-size"), r.stderr)
    }
}
