import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import QLoRA

/// `qlora quantize` and `qlora dequantize` stream tensor by tensor: the peak resident memory of
/// the child process (its VmHWM) on a generated 1 GiB f32 checkpoint stays under
/// largest tensor × 1.5 + 64 MiB. Needs ~3 GiB of temporary disk and about a minute, so it runs
/// from `make check` (QLORA_MEMORY_CHECK=1), not `make test`.
final class BoundedMemoryTests: XCTestCase {
    static let mib = 1 << 20

    /// Runs `qlora args` and returns its peak RSS in bytes: the child's VmHWM (the high-water mark of
    /// its own address space), sampled every 2 ms until it exits. Not wait4's ru_maxrss: posix_spawn
    /// runs the child on the parent's address space until exec, and exec folds that (the test
    /// process's) high-water mark into the child's ru_maxrss.
    func peakRSS(_ args: [String]) throws -> Int {
        var pid: pid_t = 0
        let argv = ([CLIRunner.executable.path] + args).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, CLIRunner.executable.path, &actions, nil, argv, environ) == 0 else {
            throw QLoraError.io(file: CLIRunner.executable.path, reason: "cannot spawn")
        }
        var peak = 0, status: Int32 = 0
        while true {
            if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
               let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) {
                peak = max(peak, kb * 1024)
            }
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            guard r == 0 else { throw QLoraError.io(file: CLIRunner.executable.path, reason: "waitpid failed") }
            usleep(2000)
        }
        XCTAssertEqual(status, 0, "qlora \(args.joined(separator: " ")) exit status \(status)")
        return peak
    }

    func testQuantizeAndDequantizeOfA1GiBCheckpointStayWithinBudget() throws {
        guard ProcessInfo.processInfo.environment["QLORA_MEMORY_CHECK"] != nil else {
            throw XCTSkip("the 1 GiB memory check runs from `make check` (QLORA_MEMORY_CHECK=1)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-memory-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("model.safetensors")
        // 16 weights of 4096 × 4096 f32 = 64 MiB each: 1 GiB of tensor data (plus two small norms).
        let rows = 4096, cols = 4096
        let writer = try SafeTensorsWriter(url: input, metadata: ["format": "pt"])
        var rng = SeededRandom(seed: 3)
        let row = rng.floats(cols, scale: 0.5)
        var w = [Float](repeating: 0, count: rows * cols)
        for i in 0..<16 {
            for r in 0..<rows { for c in 0..<cols { w[r * cols + c] = row[(c + r * 7 + i) % cols] } }
            try writer.add("model.layers.\(i).mlp.up_proj.weight", floats: w, shape: [rows, cols])
        }
        w = []
        try writer.add("model.norm.weight", floats: row, shape: [cols])
        try writer.commit()
        let largest = rows * cols * 4
        let budget = largest * 3 / 2 + 64 * BoundedMemoryTests.mib
        let fileSize = try FileManager.default.attributesOfItem(atPath: input.path)[.size] as! Int
        XCTAssertGreaterThanOrEqual(fileSize, 1 << 30)

        let quantized = dir.appendingPathComponent("model-nf4.safetensors")
        let t0 = DispatchTime.now().uptimeNanoseconds
        let quantizePeak = try peakRSS(["quantize", input.path, "-o", quantized.path])
        let t1 = DispatchTime.now().uptimeNanoseconds
        let dequantized = dir.appendingPathComponent("model-f32.safetensors")
        let dequantizePeak = try peakRSS(["dequantize", quantized.path, "-o", dequantized.path])
        let t2 = DispatchTime.now().uptimeNanoseconds
        print("bounded memory: file \(fileSize / BoundedMemoryTests.mib) MiB, largest tensor \(largest / BoundedMemoryTests.mib) MiB, "
              + "budget \(budget / BoundedMemoryTests.mib) MiB; peak RSS quantize \(quantizePeak / BoundedMemoryTests.mib) MiB "
              + "(\(Double(t1 - t0) / 1e9) s), dequantize \(dequantizePeak / BoundedMemoryTests.mib) MiB (\(Double(t2 - t1) / 1e9) s)")
        XCTAssertLessThan(quantizePeak, budget, "qlora quantize peak RSS")
        XCTAssertLessThan(dequantizePeak, budget, "qlora dequantize peak RSS")
        // The round trip is the canonical dequantization of what was written.
        let back = try SafeTensorsFile(url: dequantized)
        let checkpoint = try BnbCheckpoint(url: quantized)
        XCTAssertEqual(checkpoint.quantizedNames.count, 16)
        let name = "model.layers.5.mlp.up_proj.weight"
        XCTAssertEqual(try back.floats(name), try checkpoint.tensor(name).scalars)
    }
}
