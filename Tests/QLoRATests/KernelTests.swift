import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The fused QLoRA linear kernels (cq_fused_linear, cq_dense_linear, cq_matmul_nt) against a
/// double-precision reference, on every ISA path, across thread counts.
final class KernelTests: XCTestCase {
    struct Shape {
        var M: Int, N: Int, K: Int, r: Int, blockSize: Int
        var quant: QuantType = .nf4, doubleQuant = true, bias = true
    }

    /// Small shapes covering: M = 1 and the small-M tile path (M < 64), the panel path (M >= 64),
    /// odd K, K not a multiple of 32 or of the block (rows start mid-block / mid-byte), N not a
    /// multiple of any tile, more than one 96-row panel and 256-wide K block, r = 0, no bias.
    static let shapes: [Shape] = [
        Shape(M: 1, N: 37, K: 96, r: 4, blockSize: 64),
        Shape(M: 1, N: 13, K: 33, r: 3, blockSize: 32, quant: .fp4),
        Shape(M: 3, N: 21, K: 100, r: 2, blockSize: 64, doubleQuant: false),
        Shape(M: 5, N: 50, K: 160, r: 8, blockSize: 128, quant: .fp4, bias: false),
        Shape(M: 9, N: 11, K: 64, r: 0, blockSize: 64),
        Shape(M: 15, N: 19, K: 288, r: 16, blockSize: 256, doubleQuant: false),
        Shape(M: 16, N: 45, K: 192, r: 16, blockSize: 64),
        Shape(M: 17, N: 101, K: 301, r: 5, blockSize: 64, quant: .fp4, bias: false),
        Shape(M: 40, N: 203, K: 544, r: 16, blockSize: 256, doubleQuant: false),
        Shape(M: 33, N: 7, K: 45, r: 0, blockSize: 32, bias: false),
        // K a multiple of the block: the nibble-streaming tiles, every tile height and x-row count.
        Shape(M: 1, N: 37, K: 256, r: 16, blockSize: 64),
        Shape(M: 6, N: 9, K: 384, r: 4, blockSize: 32, quant: .fp4, doubleQuant: false),
        Shape(M: 2, N: 7, K: 256, r: 1, blockSize: 128, bias: false),
        Shape(M: 11, N: 30, K: 512, r: 16, blockSize: 512),
        // M >= 64: the panel GEMM (full 32-row x panels, a padded or a 16-wide last panel).
        Shape(M: 64, N: 203, K: 256, r: 16, blockSize: 64),
        Shape(M: 70, N: 101, K: 301, r: 5, blockSize: 64, quant: .fp4),
        Shape(M: 91, N: 26, K: 544, r: 16, blockSize: 256, doubleQuant: false, bias: false),
        // 5 blocks per row: a 4-row tile's scales cross a nested (256-block) boundary mid-vector.
        Shape(M: 2, N: 110, K: 160, r: 3, blockSize: 32),
    ]

    struct Inputs {
        var x: [Float], q: QuantizedTensor, wdq: [Float], A: [Float], B: [Float], bias: [Float]?, scaling: Float
    }

    static func inputs(_ s: Shape, seed: UInt64) throws -> Inputs {
        var rng = SeededRandom(seed: seed)
        let w = rng.floats(s.N * s.K, scale: 0.5)
        let q = try QuantizedTensor.quantize(Tensor(shape: [s.N, s.K], scalars: w), quantType: s.quant,
                                             blockSize: s.blockSize, doubleQuant: s.doubleQuant, threads: 1)
        return Inputs(x: rng.floats(s.M * s.K), q: q, wdq: q.dequantize(threads: 1).scalars,
                      A: rng.floats(s.r * s.K, scale: 0.2), B: rng.floats(s.N * s.r, scale: 0.2),
                      bias: s.bias ? rng.floats(s.N) : nil, scaling: 2.0)
    }

    /// y = x·W'ᵀ + scaling·(x·Aᵀ)·Bᵀ + bias in double precision.
    static func reference(_ s: Shape, _ i: Inputs) -> [Float] {
        var y = [Float](repeating: 0, count: s.M * s.N)
        for m in 0..<s.M {
            var xa = [Double](repeating: 0, count: s.r)
            for j in 0..<s.r { for k in 0..<s.K { xa[j] += Double(i.x[m * s.K + k]) * Double(i.A[j * s.K + k]) } }
            for n in 0..<s.N {
                var acc = 0.0
                for k in 0..<s.K { acc += Double(i.x[m * s.K + k]) * Double(i.wdq[n * s.K + k]) }
                var lora = 0.0
                for j in 0..<s.r { lora += xa[j] * Double(i.B[n * s.r + j]) }
                y[m * s.N + n] = Float(acc + Double(i.scaling) * lora + Double(i.bias?[n] ?? 0))
            }
        }
        return y
    }

    static func fused(_ s: Shape, _ i: Inputs, x: [Float]? = nil, M: Int? = nil, r: Int? = nil, threads: Int) -> [Float] {
        let M = M ?? s.M, r = r ?? s.r, x = x ?? i.x
        var y = [Float](repeating: .nan, count: M * s.N)
        let bytes = cq_fused_linear_scratch_bytes(Int64(M), Int64(s.N), Int64(s.K), Int32(r), Int32(threads))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { scratch.deallocate() }
        i.q.withKernelView { view in
            withOptional(i.bias) { bias in
                cq_fused_linear(x, Int64(M), view, i.A, i.B, Int32(r), i.scaling, bias, &y, scratch, Int32(threads))
            }
        }
        return y
    }

    static func dense(_ s: Shape, _ i: Inputs, threads: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: s.M * s.N)
        let bytes = cq_dense_linear_scratch_bytes(Int64(s.M), Int64(s.N), Int64(s.K), Int32(s.r), Int32(threads))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { scratch.deallocate() }
        withOptional(i.bias) { bias in
            cq_dense_linear(i.x, Int64(s.M), i.wdq, Int64(s.N), Int64(s.K), i.A, i.B, Int32(s.r), i.scaling, bias,
                            &y, scratch, Int32(threads))
        }
        return y
    }

    static func withOptional<R>(_ a: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
        guard let a else { return body(nil) }
        return a.withUnsafeBufferPointer { body($0.baseAddress) }
    }

    /// Runs body once per ISA this CPU has (avx512, avx2, portable), restoring the detected level.
    func forEachISA(_ body: (String) throws -> Void) rethrows {
        let original = cq_detect_isa()
        defer { _ = cq_set_isa(original) }
        var seen = Set<UInt32>()
        for isa in [CQ_ISA_AVX512, CQ_ISA_AVX2, CQ_ISA_PORTABLE] {
            let got = cq_set_isa(isa)
            guard seen.insert(got.rawValue).inserted else { continue }
            try body(String(cString: cq_isa_name(got)))
        }
    }

    func testFusedMatchesDoubleReferenceOnEveryISA() throws {
        for (n, s) in Self.shapes.enumerated() {
            let i = try Self.inputs(s, seed: UInt64(100 + n))
            let ref = Self.reference(s, i)
            forEachISA { isa in
                let what = "\(isa) M=\(s.M) N=\(s.N) K=\(s.K) r=\(s.r) bs=\(s.blockSize) \(s.quant) dq=\(s.doubleQuant)"
                let y1 = Self.fused(s, i, threads: 1)
                assertClose(y1, ref, relative: 1e-5, "fused vs double reference, \(what)")
                assertBitIdentical(Self.fused(s, i, threads: 2), y1, "fused 2 vs 1 threads, \(what)")
                assertBitIdentical(Self.fused(s, i, threads: 3), y1, "fused 3 vs 1 threads, \(what)")
            }
        }
    }

    func testDenseMatchesReferenceAndFused() throws {
        for (n, s) in Self.shapes.enumerated() {
            let i = try Self.inputs(s, seed: UInt64(200 + n))
            let what = "M=\(s.M) N=\(s.N) K=\(s.K) r=\(s.r)"
            let d1 = Self.dense(s, i, threads: 1)
            assertClose(d1, Self.reference(s, i), relative: 1e-5, "dense vs double reference, \(what)")
            assertBitIdentical(Self.dense(s, i, threads: 2), d1, "dense 2 vs 1 threads, \(what)")
            assertClose(Self.fused(s, i, threads: 2), d1, relative: 1e-5, "fused vs dense, \(what)")
        }
    }

    /// Identity rows of x pick single weight columns, so y must equal the bnb-dequantized weight
    /// exactly: checks the in-register nibble decode (any alignment, both paths) bit for bit.
    func testIdentityInputReproducesDequantizedWeightExactly() throws {
        let cases = [Shape(M: 4, N: 23, K: 96, r: 0, blockSize: 32, bias: false),      // small-M tiles
                     Shape(M: 4, N: 23, K: 96, r: 0, blockSize: 64, bias: false),      // small-M, rows mid-block
                     Shape(M: 4, N: 110, K: 160, r: 0, blockSize: 32, bias: false),    // nested-block crossings
                     Shape(M: 4, N: 23, K: 49, r: 0, blockSize: 32, quant: .fp4, bias: false), // odd K
                     Shape(M: 40, N: 29, K: 40, r: 0, blockSize: 32, doubleQuant: false, bias: false),
                     Shape(M: 300, N: 17, K: 300, r: 0, blockSize: 128, quant: .fp4, bias: false)]
        for (n, s) in cases.enumerated() {
            let i = try Self.inputs(s, seed: UInt64(300 + n))
            let cols = (0..<s.M).map { m in s.M >= s.K ? m % s.K : [0, 17, 31, s.K - 1][m % 4] }
            var x = [Float](repeating: 0, count: s.M * s.K)
            for (m, c) in cols.enumerated() { x[m * s.K + c] = 1 }
            forEachISA { isa in
                let y = Self.fused(s, i, x: x, threads: 2)
                for (m, c) in cols.enumerated() {
                    for j in 0..<s.N where !(y[m * s.N + j] == i.wdq[j * s.K + c]) {
                        XCTFail("\(isa) K=\(s.K) M=\(s.M): y[\(m), \(j)] = \(y[m * s.N + j]) but W'[\(j), \(c)] = \(i.wdq[j * s.K + c])")
                        return
                    }
                }
            }
        }
    }

    /// The dense kernel at a shape large enough to be split over threads (one where OpenBLAS SGEMM
    /// gives different bits for 1 and 2 threads): same bits for 1, 2, 3.
    func testDenseIsThreadCountIndependentAtLargerShape() throws {
        let s = Shape(M: 24, N: 300, K: 520, r: 16, blockSize: 64)
        let i = try Self.inputs(s, seed: 11)
        let d1 = Self.dense(s, i, threads: 1)
        assertClose(d1, Self.reference(s, i), relative: 1e-5, "dense vs double reference")
        assertBitIdentical(Self.dense(s, i, threads: 2), d1, "dense 2 vs 1 threads")
        assertBitIdentical(Self.dense(s, i, threads: 3), d1, "dense 3 vs 1 threads")
        var one = s
        one.M = 1
        let d = Self.dense(one, i, threads: 1)
        assertBitIdentical(Self.dense(one, i, threads: 2), d, "dense M=1 2 vs 1 threads")
    }

    /// cq_fused_linear_ex with bf16 compute: within 5e-3 of the double reference, same bits for
    /// 1 and 2 threads; at M >= 64 it runs exactly when the CPU has AVX512-BF16 (small M: see
    /// KernelBF16GemvTests).
    func testBF16ComputePath() throws {
        let shapes = [Shape(M: 64, N: 203, K: 256, r: 16, blockSize: 64),
                      Shape(M: 70, N: 101, K: 301, r: 5, blockSize: 64, quant: .fp4),
                      Shape(M: 91, N: 26, K: 545, r: 3, blockSize: 32, doubleQuant: false, bias: false),
                      Shape(M: 64, N: 13, K: 64, r: 0, blockSize: 64)]
        let hasBF16 = cq_cpu_has_avx512_bf16() != 0
        for (n, s) in shapes.enumerated() {
            let i = try Self.inputs(s, seed: UInt64(400 + n))
            let what = "M=\(s.M) N=\(s.N) K=\(s.K) r=\(s.r)"
            let (y1, ran) = Self.fusedEx(s, i, threads: 1, bf16: true)
            XCTAssertEqual(ran, hasBF16, "bf16 path taken, \(what)")
            assertClose(y1, Self.reference(s, i), relative: 5e-3, "bf16 vs double reference, \(what)")
            assertBitIdentical(Self.fusedEx(s, i, threads: 2, bf16: true).0, y1, "bf16 2 vs 1 threads, \(what)")
            let (f, ranF32) = Self.fusedEx(s, i, threads: 2, bf16: false)
            XCTAssertFalse(ranF32, "bf16 = 0 runs f32, \(what)")
            assertBitIdentical(f, Self.fused(s, i, threads: 2), "bf16 = 0 is cq_fused_linear, \(what)")
        }
        let small = Shape(M: 5, N: 9, K: 96, r: 2, blockSize: 64)
        XCTAssertFalse(Self.fusedEx(small, try Self.inputs(small, seed: 1), threads: 1, bf16: true).1,
                       "M < 64 with K % block_size != 0 stays f32")
    }

    static func fusedEx(_ s: Shape, _ i: Inputs, threads: Int, bf16: Bool) -> ([Float], Bool) {
        var y = [Float](repeating: .nan, count: s.M * s.N)
        let bytes = cq_fused_linear_scratch_bytes(Int64(s.M), Int64(s.N), Int64(s.K), Int32(s.r), Int32(threads))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { scratch.deallocate() }
        let ran = i.q.withKernelView { view in
            withOptional(i.bias) { bias in
                cq_fused_linear_ex(i.x, Int64(s.M), view, i.A, i.B, Int32(s.r), i.scaling, bias, &y, scratch,
                                   Int32(threads), bf16 ? 1 : 0)
            }
        }
        return (y, ran != 0)
    }

    func testMatmulNTMatchesReference() throws {
        let s = Shape(M: 7, N: 30, K: 75, r: 0, blockSize: 64, bias: false)
        let i = try Self.inputs(s, seed: 7)
        for M in [1, 7] {
            var y = [Float](repeating: .nan, count: M * s.N)
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(cq_matmul_nt_scratch_bytes(Int64(M), Int64(s.K), 2), 64), alignment: 64)
            defer { scratch.deallocate() }
            cq_matmul_nt(i.x, Int64(M), i.wdq, Int64(s.N), Int64(s.K), &y, scratch, 2)
            var t = s
            t.M = M
            assertClose(y, Self.reference(t, i), relative: 1e-5, "cq_matmul_nt M=\(M)")
        }
    }

    /// A weight row count of 1 and K = 0 must not read or write out of bounds.
    func testDegenerateShapes() throws {
        let s = Shape(M: 2, N: 1, K: 64, r: 2, blockSize: 64)
        let i = try Self.inputs(s, seed: 9)
        forEachISA { isa in
            assertClose(Self.fused(s, i, threads: 2), Self.reference(s, i), relative: 1e-5, "N=1 \(isa)")
        }
        var y = [Float](repeating: .nan, count: 3)
        cq_matmul_nt([], 1, [], 3, 0, &y, nil, 1)
        XCTAssertEqual(y, [0, 0, 0], "K = 0 gives zeros")
    }
}
