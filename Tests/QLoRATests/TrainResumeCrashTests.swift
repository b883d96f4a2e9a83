import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import QLoRA

/// `qlora train --checkpoint-every 1` SIGKILLed at a random moment after its first checkpoint
/// exists, then resumed (`--resume`, same --out) from the newest checkpoint directory it left:
/// the final adapter is byte for byte the uninterrupted run's. Every visible `checkpoint-<n>`
/// directory a killed run leaves is complete (checkpoints are written under a hidden temporary
/// name and renamed into place), and nothing but hidden temporaries is left besides them.
final class TrainResumeCrashTests: XCTestCase {
    static let graph = Reference.projectRoot.appendingPathComponent("Graphs/quantized-linear.json").path
    let inF = 32, outF = 24, rows = 16, steps = 40

    func spawn(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = CLIRunner.executable
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// The step numbers of the visible checkpoint directories in `out`.
    func checkpointSteps(_ out: URL) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
        return names.compactMap { $0.hasPrefix("checkpoint-") ? Int($0.dropFirst("checkpoint-".count)) : nil }.sorted()
    }

    func testKilledTrainingResumesFromItsNewestCheckpointToTheSameBits() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("qlora-train-kill-\(getpid())")
        try? fm.removeItem(at: dir)
        try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: dir) }
        var rng = SeededRandom(seed: 17)
        let weights = dir.appendingPathComponent("w.safetensors"), data = dir.appendingPathComponent("data.safetensors")
        let w = try SafeTensorsWriter(url: weights)
        try w.add("proj.weight", floats: rng.floats(outF * inF, scale: 0.2), shape: [outF, inF])
        try w.commit()
        let d = try SafeTensorsWriter(url: data)
        try d.add("x", floats: rng.floats(rows * inF), shape: [rows, inF])
        try d.add("target", floats: rng.floats(rows * outF), shape: [rows, outF])
        try d.commit()
        // AdamW with everything that carries state across steps: moments, the shuffle position
        // (batch 4 of 16 rows: 4 micro-batches an epoch), accumulation, dropout's counter, the schedule.
        func args(_ out: URL, _ extra: [String] = []) -> [String] {
            ["train", Self.graph, "--weights", weights.path, "--data", data.path, "--loss", "mse", "--steps", "\(steps)",
             "--optimizer", "adamw", "--lr", "0.02", "--weight-decay", "0.01", "--max-grad-norm", "0.5", "--grad-accum", "3",
             "--schedule", "cosine", "--warmup", "4", "--batch-size", "4", "--rank", "4", "--alpha", "8", "--dropout", "0.1",
             "--seed", "5", "--threads", "1", "--checkpoint-every", "1", "--out", out.path] + extra
        }
        func adapterBytes(_ out: URL) throws -> Data { try Data(contentsOf: out.appendingPathComponent("adapter_model.safetensors")) }

        let reference = dir.appendingPathComponent("uninterrupted")
        var start = DispatchTime.now().uptimeNanoseconds
        let r = try CLIRunner.run(args(reference))
        XCTAssertEqual(r.status, 0, r.stderr)
        var runLength = Double(DispatchTime.now().uptimeNanoseconds - start)
        let expected = try adapterBytes(reference)
        XCTAssertEqual(checkpointSteps(reference), Array(1...steps))

        var rng2 = SeededRandom(seed: 99)
        var killed: [Int] = [], trials = 0
        // Under a sanitizer (make check sets TSAN_OPTIONS / ASAN_OPTIONS) every run is several times
        // slower: allow more time for the same number of kills.
        let env = ProcessInfo.processInfo.environment
        let seconds: UInt64 = env["TSAN_OPTIONS"] != nil || env["ASAN_OPTIONS"] != nil ? 120 : 15
        let deadline = DispatchTime.now().uptimeNanoseconds + seconds * 1_000_000_000
        while killed.count < 4 && trials < 24 && DispatchTime.now().uptimeNanoseconds < deadline {
            trials += 1
            let out = dir.appendingPathComponent("run-\(trials)")
            start = DispatchTime.now().uptimeNanoseconds
            let p = try spawn(args(out))
            // Wait for the first checkpoint, then kill at a uniform moment over the rest of the run
            // (its length re-estimated after each trial: the machine's load varies).
            while p.isRunning && !fm.fileExists(atPath: out.appendingPathComponent("checkpoint-1").path) { usleep(200) }
            let u = Double(rng2.next() >> 11) / Double(1 << 53)
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start)
            usleep(useconds_t(max(0, runLength - elapsed) * u / 1000))
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            guard p.terminationReason == .uncaughtSignal else { runLength *= 0.6; continue }   // finished first: kill sooner
            runLength *= 1.05
            let left = checkpointSteps(out)
            XCTAssertFalse(left.isEmpty, "trial \(trials): checkpoint-1 existed before the kill")
            // Every visible checkpoint is complete and loads; anything else is a hidden temporary.
            for s in left {
                let c = out.appendingPathComponent("checkpoint-\(s)")
                XCTAssertEqual(try fm.contentsOfDirectory(atPath: c.path).sorted(),
                               ["adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "trainer_state.safetensors"], "trial \(trials) step \(s)")
                _ = try LoraAdapter(directory: c)
                let state = try String(contentsOf: c.appendingPathComponent("trainer_state.json"), encoding: .utf8)
                XCTAssert(state.contains("\"step\": \(s),"), "trial \(trials): \(state)")
            }
            // (the final adapter files too when the kill came after they were renamed into place)
            for name in try fm.contentsOfDirectory(atPath: out.path) where !name.hasPrefix("checkpoint-") {
                XCTAssert(name.hasPrefix(".") || (left.last == steps && name.hasPrefix("adapter_")), "trial \(trials): a killed run left \(name)")
            }
            let newest = left.last!
            killed.append(newest)
            let log = dir.appendingPathComponent("resume-\(trials).jsonl")
            let resumed = try CLIRunner.run(args(out, ["--resume", out.appendingPathComponent("checkpoint-\(newest)").path, "--log-json", log.path]))
            XCTAssertEqual(resumed.status, 0, "trial \(trials): resume from checkpoint-\(newest): \(resumed.stderr)")
            // It continued from there (a run started afresh would end with the same bits too).
            XCTAssert(resumed.stderr.contains("at step \(newest)\n"), resumed.stderr)
            let logged = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            }
            XCTAssertEqual(logged.map { $0["step"] as! Int }, Array((newest + 1)...max(newest + 1, steps)).filter { $0 <= steps }, "trial \(trials)")
            XCTAssertEqual(try adapterBytes(out), expected, "trial \(trials): resumed from checkpoint-\(newest), the adapter differs")
            XCTAssertEqual(checkpointSteps(out), Array(1...steps), "trial \(trials)")
            try? fm.removeItem(at: out)
        }
        print("train kill/resume: \(trials) trials, \(killed.count) killed mid-run, resumed from checkpoints \(killed); same adapter bytes every time")
        XCTAssertGreaterThanOrEqual(killed.count, 2, "most trials kill a running train (killed \(killed.count) of \(trials))")
    }
}
