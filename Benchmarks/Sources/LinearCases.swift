import Foundation
import CQLoRAKernels
import COpenBLAS
import QLoRA

/// in_features × out_features of a linear layer (the weight is [out, in]).
struct LinearShape {
    let K: Int, N: Int
    var label: String { "\(K)×\(N)" }
    /// Bytes of the NF4 + double-quant weight (block 64, nested block 256): what M = 1 must stream.
    var quantizedBytes: Int {
        let blocks = (K * N + 63) / 64
        return (K * N + 1) / 2 + blocks + (blocks + 255) / 256 * 4 + 256 * 4 + 4
    }
}

struct QuantVariant {
    let type: QuantType, doubleQuant: Bool
    var label: String { "\(type.rawValue.uppercased())\(doubleQuant ? "+DQ" : "")" }
}

let loraRank = 16

/// Quantizes one random weight per variant (block 64) and keeps the f32 dequantized copy of the
/// first variant for the cached (dense) path.
final class LinearWeights {
    let shape: LinearShape
    let quantized: [(QuantVariant, QuantizedTensor)]
    let dense: [Float]
    let A: [Float], B: [Float], bias: [Float]

    init(_ shape: LinearShape, variants: [QuantVariant]) throws {
        self.shape = shape
        let w = try Tensor(shape: [shape.N, shape.K], scalars: randomFloats(shape.N * shape.K, seed: 1, scale: 0.05))
        quantized = try variants.map { v in
            (v, try QuantizedTensor.quantize(w, quantType: v.type, blockSize: 64, doubleQuant: v.doubleQuant))
        }
        dense = quantized[0].1.dequantize().scalars
        A = randomFloats(loraRank * shape.K, seed: 2, scale: 0.02)
        B = randomFloats(shape.N * loraRank, seed: 3, scale: 0.02)
        bias = randomFloats(shape.N, seed: 4, scale: 0.1)
    }
}

/// Dequantizing the whole weight to f32 (what cached mode pays once, and .auto weighs).
func dequantizeCase(_ weights: LinearWeights) -> BenchCase {
    return { bench in
        let s = weights.shape
        var out = [Float](repeating: 0, count: s.K * s.N)
        for threads in bench.threadCounts {
            for (v, q) in weights.quantized {
                let t = q.withKernelView { view in
                    out.withUnsafeMutableBufferPointer { o in
                        bench.time { cq_dequantize_4bit(view, o.baseAddress, Int32(threads)) }
                    }
                }
                bench.add(Row(group: "dequantize (4-bit → f32, whole weight)", name: "cq_dequantize_4bit \(v.label)",
                              shape: s.label, threads: threads, ms: t * 1e3,
                              weightGBs: Double(q.memoryBytes) / t / 1e9))
            }
        }
    }
}

/// y = x·Wᵀ (OpenBLAS SGEMV for one row, SGEMM otherwise): the ceiling every case is compared to.
func openBLAS(_ x: [Float], _ M: Int, _ W: [Float], _ N: Int, _ K: Int, _ y: inout [Float], threads: Int) {
    openblas_set_num_threads(Int32(threads))
    if M == 1 {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(N), Int32(K), 1, W, Int32(K), x, 1, 0, &y, 1)
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(M), Int32(N), Int32(K), 1, x, Int32(K), W, Int32(K),
                    0, &y, Int32(N))
    }
}

/// y = x·Wᵀ + scaling·(x·Aᵀ)·Bᵀ + bias, r = 16: OpenBLAS SGEMM/SGEMV alone (the ceiling), the
/// cached path (f32 weight + LoRA, cq_dense_linear) and the fused on-the-fly path per quant variant.
func linearCase(_ weights: LinearWeights, rowCounts: [Int]) -> BenchCase {
    return { bench in
        let s = weights.shape
        let group = "linear \(s.label) (in×out), r = \(loraRank)"
        let xs = Dictionary(uniqueKeysWithValues: rowCounts.map { ($0, randomFloats($0 * s.K, seed: 5)) })
        var y = [Float](repeating: 0, count: (rowCounts.max() ?? 1) * s.N)
        let flops = { (M: Int) in 2.0 * Double(M) * Double(s.N) * Double(s.K) }
        var outputs: [String: [Float]] = [:] // last output of each kind, for the 1-vs-N-threads check
        for threads in bench.threadCounts {
            // OpenBLAS phase.
            for M in rowCounts {
                let x = xs[M]!
                let tb = bench.time { openBLAS(x, M, weights.dense, s.N, s.K, &y, threads: threads) }
                bench.ceilings["blas \(s.label) M=\(M) t=\(threads)"] = tb
                outputs["OpenBLAS M=\(M) t=\(threads)"] = y
                bench.add(Row(group: group, name: M == 1 ? "OpenBLAS SGEMV, f32 W (ceiling)" : "OpenBLAS SGEMM, f32 W (ceiling)",
                              shape: s.label, m: M, threads: threads, ms: tb * 1e3, gflops: flops(M) / tb / 1e9,
                              weightGBs: Double(s.K * s.N * 4) / tb / 1e9, vsBLAS: 1))
            }
            bench.settle()
            // Our kernels (OpenMP): cached then fused.
            let gbsSame = bench.ceilings["read \(s.quantizedBytes) t=\(threads)"]
            let gbsDRAM = bench.ceilings["read dram t=\(threads)"]
            for M in rowCounts {
                let x = xs[M]!
                let tb = bench.ceilings["blas \(s.label) M=\(M) t=\(threads)"]!
                let denseScratch = Scratch(bytes: cq_dense_linear_scratch_bytes(Int64(M), Int64(s.N), Int64(s.K), Int32(loraRank), Int32(threads)))
                let td = bench.time {
                    cq_dense_linear(x, Int64(M), weights.dense, Int64(s.N), Int64(s.K), weights.A, weights.B,
                                    Int32(loraRank), 2.0, weights.bias, &y, denseScratch.pointer, Int32(threads))
                }
                outputs["cached M=\(M) t=\(threads)"] = y
                bench.add(Row(group: group, name: "cached: f32 W + LoRA (cq_dense_linear)", shape: s.label, m: M,
                              threads: threads, ms: td * 1e3, gflops: flops(M) / td / 1e9,
                              weightGBs: Double(s.K * s.N * 4) / td / 1e9, vsBLAS: tb / td))
                let scratch = Scratch(bytes: cq_fused_linear_scratch_bytes(Int64(M), Int64(s.N), Int64(s.K),
                                                                          Int32(loraRank), Int32(threads)))
                for (v, q) in weights.quantized {
                    let tf = q.withKernelView { view in
                        bench.time {
                            cq_fused_linear(x, Int64(M), view, weights.A, weights.B, Int32(loraRank), 2.0, weights.bias,
                                            &y, scratch.pointer, Int32(threads))
                        }
                    }
                    let stream = gbsDRAM.map { Double(q.memoryBytes) / ($0 * 1e9) }
                    let streamSame = gbsSame.map { Double(q.memoryBytes) / ($0 * 1e9) }
                    if v.label == weights.quantized[0].0.label { outputs["fused M=\(M) t=\(threads)"] = y }
                    bench.add(Row(group: group, name: "fused on-the-fly \(v.label) (cq_fused_linear)", shape: s.label,
                                  m: M, threads: threads, ms: tf * 1e3, gflops: flops(M) / tf / 1e9,
                                  weightGBs: Double(q.memoryBytes) / tf / 1e9, vsBLAS: tb / tf,
                                  vsStream: stream.map { $0 / tf }, vsStreamSameSize: streamSame.map { $0 / tf }))
                }
                // Optional bf16 compute (AVX512-BF16) where the f32 path runs its panel GEMM.
                let (v, q) = weights.quantized[0]
                var ran: Int32 = 0
                let tbf = q.withKernelView { view in
                    bench.time {
                        ran = cq_fused_linear_ex(x, Int64(M), view, weights.A, weights.B, Int32(loraRank), 2.0,
                                                 weights.bias, &y, scratch.pointer, Int32(threads), 1)
                    }
                }
                if ran != 0 {
                    outputs["fused-bf16 M=\(M) t=\(threads)"] = y
                    if let f32 = outputs["fused M=\(M) t=\(threads)"] {
                        let n = M * s.N
                        let scale = f32.prefix(n).map { abs($0) }.max() ?? 1
                        let err = zip(y.prefix(n), f32.prefix(n)).map { abs($0 - $1) }.max() ?? 0
                        bench.worstBF16Error = max(bench.worstBF16Error, Double(err / scale))
                    }
                    bench.add(Row(group: group, name: "fused bf16 compute \(v.label) (cq_fused_linear_ex)", shape: s.label,
                                  m: M, threads: threads, ms: tbf * 1e3, gflops: flops(M) / tbf / 1e9,
                                  weightGBs: Double(q.memoryBytes) / tbf / 1e9, vsBLAS: tb / tbf))
                }
            }
            bench.settle()
        }
        // Bitwise reproducibility across thread counts, at the benchmark shapes.
        guard let t0 = bench.threadCounts.first, bench.threadCounts.count > 1 else { return }
        for kind in ["OpenBLAS", "cached", "fused", "fused-bf16"] where outputs.keys.contains(where: { $0.hasPrefix(kind + " ") }) {
            let differing = rowCounts.flatMap { M in
                bench.threadCounts.dropFirst().compactMap { t -> String? in
                    let n = M * s.N
                    guard let a = outputs["\(kind) M=\(M) t=\(t0)"], let b = outputs["\(kind) M=\(M) t=\(t)"] else { return nil }
                    return a.prefix(n).elementsEqual(b.prefix(n), by: { $0.bitPattern == $1.bitPattern }) ? nil : "M=\(M) t=\(t)"
                }
            }
            bench.notes.append("\(s.label) \(kind): output for \(bench.threadCounts.map(String.init).joined(separator: " vs ")) threads "
                + (differing.isEmpty ? "bitwise identical at every M" : "DIFFERS at \(differing.joined(separator: ", "))"))
        }
    }
}
