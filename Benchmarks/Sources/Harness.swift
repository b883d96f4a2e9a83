import Foundation

/// One line of the report. Optional columns print as "–".
struct Row {
    var group: String
    var name: String
    var shape: String
    var m: Int = 0
    var threads: Int
    var ms: Double
    var gflops: Double? = nil
    var weightGBs: Double? = nil
    /// t(OpenBLAS SGEMM/SGEMV at the same shape and threads) / t(this): 1.0 = as fast.
    var vsBLAS: Double? = nil
    /// t(streaming read of this case's weight bytes at DRAM bandwidth, 256 MiB buffer) / t(this).
    var vsStream: Double? = nil
    /// The same with the bandwidth of a buffer the size of the weight (may sit in the LLC).
    var vsStreamSameSize: Double? = nil
}

/// Run-wide settings and the ceilings measured so far (cases look them up to report ratios).
final class Bench {
    let quick: Bool
    let runs: Int
    let threadCounts: [Int]
    var rows: [Row] = []
    var ceilings: [String: Double] = [:]   // name -> seconds (or GB/s for bandwidth)
    var notes: [String] = []
    /// Largest max|y_bf16 - y_f32| / max|y_f32| seen (bf16 compute vs the f32 fused path).
    var worstBF16Error = 0.0

    init(quick: Bool, threadCounts: [Int]) {
        self.quick = quick
        self.runs = quick ? 3 : 5
        self.threadCounts = threadCounts
    }

    /// Median wall time in seconds of `runs` calls after at least `warmup` untimed calls and at
    /// least 0.1 s of them: on this VM an idle second vCPU needs ~15 ms of work to come back to
    /// speed, which would otherwise land in the timed calls of short cases.
    func time(warmup: Int = 1, _ body: () -> Void) -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        var calls = 0
        while calls < warmup || DispatchTime.now().uptimeNanoseconds - start < 100_000_000 {
            body()
            calls += 1
        }
        var samples: [Double] = []
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        samples.sort()
        return samples[samples.count / 2]
    }

    /// Medians of several bodies timed in interleaved rounds (A B C, B C A, C A B, …), after ≥ 0.1 s of
    /// warm-up each, with the last-level cache evicted before every timed call: slow drifts of a
    /// shared machine then hit every body alike, and no body finds its weights left in the cache by
    /// the one before. This matters when the bodies are nearly (or exactly) the same work, as
    /// `.auto` and the mode it picks; it measures the cold-weight case (a layer of a model larger
    /// than the cache).
    func timeInterleaved(rounds: Int, _ bodies: [() -> Void]) -> [Double] {
        for body in bodies {
            let start = DispatchTime.now().uptimeNanoseconds
            repeat { body() } while DispatchTime.now().uptimeNanoseconds - start < 100_000_000
        }
        var samples = [[Double]](repeating: [], count: bodies.count)
        for round in 0..<rounds {
            // Rotate the order each round, so no body always runs right after the same other one
            // (a body that streams a large weight evicts the next one's weight from the LLC).
            for j in 0..<bodies.count {
                let i = (j + round) % bodies.count
                evictCaches()
                let t0 = DispatchTime.now().uptimeNanoseconds
                bodies[i]()
                samples[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
            }
        }
        return samples.map { $0.sorted()[$0.count / 2] }
    }

    private lazy var evictionBuffer = [UInt8](repeating: 1, count: 96 << 20)

    /// Touches a buffer three times the size of this machine's L3 (32 MiB here).
    func evictCaches() {
        evictionBuffer.withUnsafeMutableBufferPointer { b in
            var i = 0
            while i < b.count { b[i] &+= 1; i += 64 }
        }
    }

    /// OpenMP (our kernels) and OpenBLAS each keep worker threads spinning for a while after a
    /// call; on 2 cores that would slow the other runtime's next measurement. Called between them.
    func settle() { usleep(300_000) }

    func add(_ row: Row) {
        rows.append(row)
        let f = { (v: Double?, d: Int) in v.map { String(format: "%.\(d)f", $0) } ?? "–" }
        print("\(row.group) | \(row.name) | \(row.shape) M=\(row.m) | t=\(row.threads) | \(String(format: "%.3f", row.ms)) ms | "
              + "\(f(row.gflops, 1)) GFLOP/s | \(f(row.weightGBs, 2)) GB/s | vsBLAS \(f(row.vsBLAS, 3)) | vsStream \(f(row.vsStream, 3)) / \(f(row.vsStreamSameSize, 3))")
        fflush(nil)
    }
}

/// A benchmark case: a small function that measures something and appends rows.
typealias BenchCase = (Bench) throws -> Void

/// 64-byte aligned scratch that lives for one case.
final class Scratch {
    let pointer: UnsafeMutableRawPointer
    init(bytes: Int) { pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64) }
    deinit { pointer.deallocate() }
}

/// Deterministic uniform floats in [-scale, scale) (xorshift), filled quickly for large sizes.
func randomFloats(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var s = seed &* 0x9E3779B97F4A7C15 | 1
    return [Float](unsafeUninitializedCapacity: n) { buf, count in
        for i in 0..<n {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            buf[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
        count = n
    }
}
