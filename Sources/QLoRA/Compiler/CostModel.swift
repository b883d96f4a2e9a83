/// The `.auto` mode's estimate of one linear node's time in each mode: a roofline with the
/// machine's streaming bandwidth and GEMM throughput.
///
///     on-the-fly: max(4-bit weight bytes / bandwidth, 2·M·N·K / (gemm · fusedEfficiency))
///     cached:     max(f32 weight bytes / bandwidth,   2·M·N·K / gemm)
///
/// Small M is bandwidth-bound, where reading 4.13 bits per weight instead of 32 wins by up to
/// 7.7×; large M is compute-bound, where the fused kernel pays for decoding its weight panels
/// (`fusedEfficiency` < 1). Cached is chosen only when it is clearly faster (by `margin`),
/// because it also costs 8× the weight memory.
///
/// Calibration (`make bench`, README): the fused kernel runs the same register-blocked GEMM
/// micro-kernel as the cached path and decodes each panel once per 96 output rows, which costs
/// about 2% at large M. So on this kind of machine cached never wins by the 5% margin and there is
/// no crossover: `.auto` keeps every weight on-the-fly (measured: cached is 3.7× slower at M = 1,
/// 2× at M = 16 and equal within noise at M = 128–512). A kernel build whose decode is slower
/// relative to its GEMM would lower `fusedEfficiency` and bring the crossover in.
struct CostModel: Sendable {
    var bandwidthBytesPerSecond: Double
    var sgemmFlopsPerSecond: Double
    var fusedEfficiency: Double
    var margin: Double = 0.95

    static func `default`(threads: Int) -> CostModel {
        let t = Double(threads)
        return CostModel(bandwidthBytesPerSecond: min(24e9 * t, 34e9), sgemmFlopsPerSecond: 95e9 * t,
                         fusedEfficiency: 0.98)
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
