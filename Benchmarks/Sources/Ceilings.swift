import Foundation

/// Streaming-read bandwidth: the memory ceiling for the memory-bound (small M) cases.
enum StreamRead {
    /// Sums `bytes` of a buffer with `threads` threads (each a contiguous part); returns the sum so
    /// the reads cannot be optimised away.
    static func read(_ p: UnsafePointer<SIMD16<Float>>, vectors: Int, threads: Int) -> Float {
        var partial = [Float](repeating: 0, count: threads)
        // Addresses cross into the worker closure as integers (raw pointers are not Sendable).
        let src = UInt(bitPattern: p)
        partial.withUnsafeMutableBufferPointer { outBuf in
            let dst = UInt(bitPattern: outBuf.baseAddress)
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let p = UnsafePointer<SIMD16<Float>>(bitPattern: src)!
                let out = UnsafeMutablePointer<Float>(bitPattern: dst)!
                var i = vectors * t / threads
                let end = vectors * (t + 1) / threads
                var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
                while i + 4 <= end {
                    a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]
                    i += 4
                }
                while i < end { a0 += p[i]; i += 1 }
                out[t] = (a0 + a1 + a2 + a3).sum()
            }
        }
        return partial.reduce(0, +)
    }

    /// GB/s reading a buffer of `bytes` (already touched once) with `threads` threads.
    static func bandwidth(_ bench: Bench, bytes: Int, threads: Int) -> Double {
        let vectors = max(bytes / 64, 1)
        let buf = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: vectors)
        defer { buf.deallocate() }
        buf.initialize(repeating: SIMD16<Float>(repeating: 1), count: vectors)
        var sink: Float = 0
        let t = bench.time(warmup: 2) { sink += read(buf, vectors: vectors, threads: threads) }
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
