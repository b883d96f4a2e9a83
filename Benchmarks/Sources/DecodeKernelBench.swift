import Foundation
import CQLoRAKernels
import QLoRA

/// `qlora-bench --m1 [--threads 2] [--rounds 9] [--json out.json]`: issue 10's one-layer decode
/// goal (4096→11008 NF4 + double quant, block 64, LoRA r = 16, M = 1, the f32-exact fused kernel)
/// against a streaming read of the same number of bytes (a buffer the size of the weight: it sits
/// in the last-level cache, as the weight does when the kernel is called repeatedly) and of a
/// 256 MiB buffer (DRAM). On a shared machine a ratio of two numbers measured minutes apart means
/// little, so the three are measured in interleaved rounds (the order rotates every round), each
/// a median of several calls, and the report gives every round's ratio and their median. The
/// kernel runs over the weight as a QuantizedWeightStorage holds it (the paired nibble order) and,
/// for comparison, over bitsandbytes' order.
enum DecodeKernelBench {
    struct Round { let kernel: Double, kernelBnb: Double, readSame: Double, readDRAM: Double }

    static func run(threads: Int, rounds: Int, json: String?) throws {
        let shape = LinearShape(K: 4096, N: 11008)
        let weights = try LinearWeights(shape, variants: [QuantVariant(type: .nf4, doubleQuant: true)])
        let q = weights.quantized[0].1
        let bytes = q.memoryBytes
        let bench = Bench(quick: false, threadCounts: [threads])
        let x = randomFloats(shape.K, seed: 5)
        var y = [Float](repeating: 0, count: shape.N)
        let scratch = Scratch(bytes: cq_fused_linear_scratch_bytes(1, Int64(shape.N), Int64(shape.K), Int32(loraRank), Int32(threads)))
        let storage = QuantizedWeightStorage(name: "m1", weight: q, pairNibbles: true)
        let timed = { (view: UnsafePointer<cq_qweight>) in
            bench.time {
                cq_fused_linear(x, 1, view, weights.A, weights.B, Int32(loraRank), 2.0, weights.bias, &y,
                                scratch.pointer, Int32(threads))
            }
        }
        let kernel = { storage.withKernelView(timed) }, kernelBnb = { q.withKernelView(timed) }
        // Seconds to read the weight's bytes at each buffer's bandwidth.
        let readSame = { Double(bytes) / (StreamRead.bandwidth(bench, bytes: bytes, threads: threads) * 1e9) }
        let readDRAM = { Double(bytes) / (StreamRead.bandwidth(bench, bytes: 256 << 20, threads: threads) * 1e9) }
        let measures: [() -> Double] = [kernel, kernelBnb, readSame, readDRAM]
        var results: [Round] = []
        for r in 0..<rounds {
            var t = [Double](repeating: 0, count: measures.count)
            for j in 0..<measures.count { let i = (j + r) % measures.count; t[i] = measures[i]() }
            results.append(Round(kernel: t[0], kernelBnb: t[1], readSame: t[2], readDRAM: t[3]))
            print(String(format: "round %d: kernel %.3f ms (bnb order %.3f), read of its %.1f MiB %.3f ms (same-size buffer) / %.3f ms (256 MiB) -> %.2fx / %.2fx",
                         r + 1, t[0] * 1e3, t[1] * 1e3, Double(bytes) / 1048576, t[2] * 1e3, t[3] * 1e3, t[0] / t[2], t[0] / t[3]))
        }
        let vsSame = median(results.map { $0.kernel / $0.readSame }), vsDRAM = median(results.map { $0.kernel / $0.readDRAM })
        let bnbSame = median(results.map { $0.kernelBnb / $0.readSame }), paired = median(results.map { $0.kernelBnb / $0.kernel })
        print(String(format: "median over %d rounds (threads %d): kernel %.3f ms = %.2fx the same-size read, %.2fx the DRAM read; bitsandbytes' nibble order %.2fx the same-size read (the paired order is %.2fx as fast)",
                     rounds, threads, median(results.map(\.kernel)) * 1e3, vsSame, vsDRAM, bnbSame, paired))
        guard let json else { return }
        let list = { (xs: [Double]) in "[" + xs.map { String(format: "%.6g", $0) }.joined(separator: ", ") + "]" }
        let body = "{\"threads\": \(threads), \"weight_bytes\": \(bytes), "
            + "\"kernel_ms\": \(list(results.map { $0.kernel * 1e3 })), "
            + "\"kernel_bnb_order_ms\": \(list(results.map { $0.kernelBnb * 1e3 })), "
            + "\"read_same_size_ms\": \(list(results.map { $0.readSame * 1e3 })), "
            + "\"read_dram_ms\": \(list(results.map { $0.readDRAM * 1e3 })), "
            + "\"kernel_over_read_same_size\": \(String(format: "%.6g", vsSame)), "
            + "\"kernel_over_read_dram\": \(String(format: "%.6g", vsDRAM))}\n"
        try body.write(toFile: json, atomically: true, encoding: .utf8) // temp file + rename
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
