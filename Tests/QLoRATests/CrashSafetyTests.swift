import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import QLoRA

/// Writers replace files atomically: `qlora quantize` is SIGKILLed at random moments while it
/// overwrites an existing output, and after every kill the output is byte for byte either the
/// previous file or the complete new one, and loads.
final class CrashSafetyTests: XCTestCase {
    /// A plain f32 checkpoint: `layers` weights [rows, 256] (quantized by default) and a norm.
    func writeCheckpoint(_ url: URL, seed: UInt64, layers: Int = 6, rows: Int = 512) throws {
        var rng = SeededRandom(seed: seed)
        let writer = try SafeTensorsWriter(url: url, metadata: ["format": "pt"])
        for i in 0..<layers {
            try writer.add("model.layers.\(i).mlp.up_proj.weight", floats: rng.floats(rows * 256), shape: [rows, 256])
        }
        try writer.add("model.norm.weight", floats: rng.floats(256), shape: [256])
        try writer.commit()
    }

    func spawn(_ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = CLIRunner.executable
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    func testKilledQuantizeLeavesThePreviousOrTheNewFileIntact() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-crash-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inputA = dir.appendingPathComponent("a.safetensors"), inputB = dir.appendingPathComponent("b.safetensors")
        try writeCheckpoint(inputA, seed: 1)
        try writeCheckpoint(inputB, seed: 2)
        let out = dir.appendingPathComponent("out.safetensors")
        // The two complete outputs, and how long one run takes.
        let fullB = dir.appendingPathComponent("full-b.safetensors")
        XCTAssertEqual(try CLIRunner.run(["quantize", inputA.path, "-o", out.path, "--threads", "1"]).status, 0)
        var times: [UInt64] = []
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            XCTAssertEqual(try CLIRunner.run(["quantize", inputB.path, "-o", fullB.path, "--threads", "1"]).status, 0)
            times.append(DispatchTime.now().uptimeNanoseconds - start)
        }
        let runNanos = times.sorted()[1]
        let previous = try Data(contentsOf: out), next = try Data(contentsOf: fullB)
        XCTAssertNotEqual(previous, next)

        var rng = SeededRandom(seed: 42)
        var killed = 0, completed = 0
        var runLength = Double(runNanos)
        for trial in 0..<50 {
            let p = try spawn(["quantize", inputB.path, "-o", out.path, "--threads", "1"])
            // Even trials: uniform over the whole run; odd trials: over its last 40%, where the
            // output is written and renamed. The run's length follows the machine's load, so it
            // is re-estimated: shorter after a run that finished before the kill, longer after one
            // that was killed.
            let u = Double(rng.next() >> 11) / Double(1 << 53)
            let delay = UInt64(runLength * (trial % 2 == 0 ? u : 0.6 + 0.4 * u))
            usleep(useconds_t(delay / 1000))
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal { killed += 1; runLength *= 1.05 } else { completed += 1; runLength *= 0.8 }
            let now = try Data(contentsOf: out)
            XCTAssertTrue(now == previous || now == next, "trial \(trial): output is neither the previous nor the new file (\(now.count) bytes)")
            let checkpoint = try BnbCheckpoint(url: out)
            XCTAssertEqual(checkpoint.quantizedNames.count, 6, "trial \(trial)")
            _ = try checkpoint.quantized(checkpoint.quantizedNames[trial % 6])
            if now == next { try previous.write(to: out) }   // the next trial overwrites the previous file again
        }
        print("crash safety: 50 trials, \(killed) writers killed mid-run, \(completed) finished first; output intact every time")
        XCTAssertGreaterThanOrEqual(killed, 25, "most trials kill a running writer (killed \(killed), completed \(completed))")
        // Killed runs leave at most their hidden temporary files (SIGKILL runs no cleanup): a partial
        // output, or the empty probe the writability check creates and unlinks; nothing else.
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
            .filter { !$0.hasPrefix(".out.safetensors.") && !$0.hasPrefix(".qlora-probe-") }
        XCTAssertEqual(left.sorted(), ["a.safetensors", "b.safetensors", "full-b.safetensors", "out.safetensors"])
    }

    /// A failed write (here: the destination is a directory, so rename fails) removes its
    /// temporary file and leaves the destination as it was.
    func testFailedCommitRemovesItsTemporaryFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-commit-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let target = dir.appendingPathComponent("taken.safetensors")
        try FileManager.default.createDirectory(at: target.appendingPathComponent("inside"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try SafeTensorsWriter(url: target)
        try writer.add("w", floats: [1, 2, 3], shape: [3])
        XCTAssertThrowsError(try writer.commit()) { error in
            XCTAssertTrue("\(error)".contains(target.path), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["taken.safetensors"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target.path), ["inside"])
        XCTAssertThrowsError(try writeAtomically([1, 2, 3], to: target))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["taken.safetensors"])
    }
}
