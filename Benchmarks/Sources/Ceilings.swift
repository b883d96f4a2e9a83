import CQLoRAKernels
import Foundation

/// Streaming-read bandwidth: the memory ceiling for the memory-bound (small M) cases.
enum StreamRead {
    /// GB/s reading a buffer of `bytes` (already touched once) with `threads` threads and the
    /// widest loads (cq_stream_read). The buffer comes from the allocator the weights use
    /// (cq_alloc_aligned: transparent huge pages from 2 MiB on), so the ceiling and the kernels
    /// read memory mapped the same way. (Until 2026-12-01 this was a Swift loop of 16-byte loads
    /// over 4 KiB pages: 19–25 GB/s from DRAM where this reads 28–33, so ratios to it were too kind.)
    static func bandwidth(_ bench: Bench, bytes: Int, threads: Int) -> Double {
        let vectors = max(bytes / 64, 1)
        guard let raw = cq_alloc_aligned(vectors * 64) else { fatalError("out of memory: \(vectors * 64) bytes") }
        defer { cq_free_aligned(raw) }
        let buf = raw.bindMemory(to: SIMD16<Float>.self, capacity: vectors)
        buf.initialize(repeating: SIMD16<Float>(repeating: 1), count: vectors)
        var sink: UInt64 = 0
        let t = bench.time(warmup: 2) { sink ^= cq_stream_read(raw, vectors * 64, Int32(threads)) }
        if sink == 42 { print("") } // keep `sink` alive
        return Double(vectors * 64) / t / 1e9
    }
}

/// Machine ceilings: read bandwidth well beyond the last-level cache and at each weight's size.
func streamCeilings(weightBytes: [(String, Int)]) -> BenchCase {
    return { bench in
        for threads in bench.threadCounts {
            var sizes = [("256 MiB (≫ LLC)", 256 << 20)]
            sizes += weightBytes.map { ("\($0.0) 4-bit weight, \(String(format: "%.1f", Double($0.1) / 1048576)) MiB", $0.1) }
            for (label, bytes) in sizes {
                let gbs = StreamRead.bandwidth(bench, bytes: bytes, threads: threads)
                bench.ceilings["read \(bytes) t=\(threads)"] = gbs
                if label.hasPrefix("256") { bench.ceilings["read dram t=\(threads)"] = gbs }
                bench.add(Row(group: "ceiling", name: "streaming read", shape: label, threads: threads,
                              ms: Double(bytes) / gbs / 1e6, weightGBs: gbs))
            }
        }
    }
}
