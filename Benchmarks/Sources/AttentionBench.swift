import CQLoRAKernels
import Foundation

/// `qlora-bench --attention [--threads 2] [--runs 5]`: the fused causal GQA attention kernel alone
/// at SmolLM2-135M's shape (9 query heads, 3 KV heads, head_dim 64): prefill (forward) and the
/// backward pass over seq 512, one decode query over a 2048-key cache, and a packed row of 512
/// (eight examples of 64). Median milliseconds and attention pairs (query, visible key) per µs.
enum AttentionBench {
    static func run(threads: Int, runs: Int) {
        let heads = 9, kvHeads = 3, d = 64, scale = Float(1 / Double(d).squareRoot())
        func median(_ body: () -> Void) -> Double {
            body()
            var times: [Double] = []
            for _ in 0..<max(1, runs) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            return times.sorted()[times.count / 2]
        }
        func floats(_ n: Int, seed: UInt64) -> [Float] {
            var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
            return (0..<n).map { _ in s ^= s << 13; s ^= s >> 7; s ^= s << 17; return Float(s >> 40) / Float(1 << 24) - 0.5 }
        }
        func report(_ name: String, _ ms: Double, pairs: Int) {
            print(String(format: "attention %@ threads=%d: %.3f ms, %.1f pairs/µs", name, threads, ms, Double(pairs) / (ms * 1000)))
        }
        print("attention ISA: \(cq_detect_isa() == CQ_ISA_AVX512 ? "avx512" : cq_detect_isa() == CQ_ISA_AVX2 ? "avx2" : "portable")")
        let s = 512, kvLen = 2048
        let q = floats(s * heads * d, seed: 1), k = floats(kvLen * kvHeads * d, seed: 2), v = floats(kvLen * kvHeads * d, seed: 3)
        let dout = floats(s * heads * d, seed: 4)
        var out = [Float](repeating: 0, count: s * heads * d), lse = [Float](repeating: 0, count: heads * s)
        var dq = out, dk = [Float](repeating: 0, count: s * kvHeads * d), dv = dk
        var scratch = [Float](repeating: 0, count: Int(cq_attention_grad_scratch_bytes(1, Int64(s), Int64(s), Int64(heads), Int64(kvHeads), Int64(d))) / 4)
        let causal = heads * s * (s + 1) / 2
        report("prefill seq \(s)", median { cq_attention(q, k, v, &out, &lse, 1, Int64(s), Int64(s), Int64(heads), Int64(kvHeads), Int64(d), scale, Int32(threads)) },
               pairs: causal)
        report("backward seq \(s)", median {
            cq_attention_grad(q, k, v, out, lse, dout, &dq, &dk, &dv, &scratch, 1, Int64(s), Int64(s), Int64(heads), Int64(kvHeads), Int64(d), scale, Int32(threads))
        }, pairs: causal)
        report("decode 1 query over \(kvLen) keys", median {
            for _ in 0..<16 { cq_attention_cached(q, k, v, &out, &lse, 1, 1, Int64(kvLen), Int64(kvLen), Int64(heads), Int64(kvHeads), Int64(d), scale, Int32(threads)) }
        } / 16, pairs: heads * kvLen)
        let positions = (0..<s).map { Int32($0 % 64) }
        report("packed seq \(s) (8 × 64)", median {
            cq_attention_segmented(q, k, v, positions, &out, &lse, 1, Int64(s), Int64(heads), Int64(kvHeads), Int64(d), scale, Int32(threads))
        }, pairs: heads * 8 * 64 * 65 / 2)
    }
}
