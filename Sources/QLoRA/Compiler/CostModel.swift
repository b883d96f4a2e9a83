/// The `.auto` mode's estimate of one linear node's time in each mode: a roofline with the
/// machine's streaming bandwidth and SGEMM throughput.
///
///     on-the-fly: max(4-bit weight bytes / bandwidth, 2·M·N·K / (sgemm · fusedEfficiency))
///     cached:     max(f32 weight bytes / bandwidth,   2·M·N·K / sgemm)
///
/// Small M is bandwidth-bound, where reading 4.13 bits per weight instead of 32 wins by up to
/// 7.7×; large M is compute-bound, where the fused kernel pays for dequantizing its panels
/// (`fusedEfficiency` < 1). The crossover M is where the two meet; cached is chosen only when it is
/// clearly faster (by `margin`), because it also costs 8× the weight memory.
/// Constants are per-thread figures from `make bench` on the reference machine (README).
struct CostModel: Sendable {
    var bandwidthBytesPerSecond: Double
    var sgemmFlopsPerSecond: Double
    var fusedEfficiency: Double
    var margin: Double = 0.95

    static func `default`(threads: Int) -> CostModel {
        let t = Double(threads)
        return CostModel(bandwidthBytesPerSecond: min(12e9 * t, 24e9), sgemmFlopsPerSecond: 110e9 * t,
                         fusedEfficiency: 0.85)
    }

    func onTheFlySeconds(m: Int, n: Int, k: Int, bitsPerWeight: Double) -> Double {
        let bytes = Double(n * k) * bitsPerWeight / 8
        return max(bytes / bandwidthBytesPerSecond, 2 * Double(m * n * k) / (sgemmFlopsPerSecond * fusedEfficiency))
    }

    func cachedSeconds(m: Int, n: Int, k: Int) -> Double {
        max(Double(n * k) * 4 / bandwidthBytesPerSecond, 2 * Double(m * n * k) / sgemmFlopsPerSecond)
    }

    /// True when the cached f32 weight is worth its memory for rows `m` of a [n, k] weight.
    func prefersCached(m: Int, n: Int, k: Int, bitsPerWeight: Double) -> Bool {
        cachedSeconds(m: m, n: n, k: k) < margin * onTheFlySeconds(m: m, n: n, k: k, bitsPerWeight: bitsPerWeight)
    }
}
