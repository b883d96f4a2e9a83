import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The "paired blocks" nibble order a QuantizedWeightStorage keeps in memory (cqlora.h,
/// cq_pair_nibbles): its definition, the round trip to bitsandbytes' bytes, and every kernel that
/// reads it — decode, the panel GEMM, the small-M tiles and the grouped GEMV — on every ISA path.
final class PairedNibbleTests: XCTestCase {
    /// Code of flat element e in bitsandbytes' order: high nibble of byte e/2 for even e.
    static func bnbCode(_ packed: [UInt8], _ e: Int) -> UInt8 { e % 2 == 0 ? packed[e / 2] >> 4 : packed[e / 2] & 15 }

    func testPairedOrderIsTheDocumentedOneAndRoundTrips() throws {
        for (rows, cols, bs) in [(3, 128, 64), (2, 512, 256), (1, 8192, 4096), (5, 256, 128)] {
            let q = try randomQuantizedWeight(rows: rows, cols: cols, blockSize: bs, double: false, seed: UInt64(cols + bs))
            var paired = q.packed
            XCTAssertEqual(paired.withUnsafeMutableBufferPointer { cq_pair_nibbles($0.baseAddress, Int64(rows * cols), Int32(bs), 1, 2) }, 0)
            // Byte t of pair c: element t of block 2c (low nibble), of block 2c+1 (high nibble).
            for c in 0..<(rows * cols / (2 * bs)) {
                for t in 0..<bs {
                    let byte = paired[c * bs + t]
                    XCTAssertEqual(byte & 15, Self.bnbCode(q.packed, 2 * c * bs + t), "bs \(bs) pair \(c) byte \(t) low")
                    XCTAssertEqual(byte >> 4, Self.bnbCode(q.packed, (2 * c + 1) * bs + t), "bs \(bs) pair \(c) byte \(t) high")
                }
            }
            XCTAssertEqual(paired.withUnsafeMutableBufferPointer { cq_pair_nibbles($0.baseAddress, Int64(rows * cols), Int32(bs), 0, 1) }, 0)
            XCTAssertEqual(paired, q.packed, "round trip, bs \(bs)")
            // Shapes it cannot pair are refused and left as they are.
            var odd = q.packed
            XCTAssertEqual(odd.withUnsafeMutableBufferPointer { cq_pair_nibbles($0.baseAddress, Int64(rows * cols - 2), Int32(bs), 1, 1) }, -1)
            XCTAssertEqual(odd.withUnsafeMutableBufferPointer { cq_pair_nibbles($0.baseAddress, Int64(rows * cols), 8192, 1, 1) }, -1)
            XCTAssertEqual(odd, q.packed)
            // The storage pairs in memory and gives bitsandbytes' bytes back.
            let storage = QuantizedWeightStorage(name: "w", weight: q, pairNibbles: true)
            XCTAssertTrue(storage.isPaired)
            XCTAssertEqual(storage.weight, q)
        }
    }

    func testOnlyShapesWithWholeBlockPairsPerRowArePaired() throws {
        for (cols, bs, expected) in [(128, 64, true), (96, 64, false), (192, 64, false), (256, 32, false),
                                     (256, 128, true), (384, 128, false)] {
            let q = try randomQuantizedWeight(rows: 3, cols: cols, blockSize: bs, double: true, seed: 7)
            let storage = QuantizedWeightStorage(name: "w", weight: q, pairNibbles: true)
            XCTAssertEqual(storage.isPaired, expected, "cols \(cols) block \(bs)")
            XCTAssertEqual(storage.weight, q, "cols \(cols) block \(bs)")
            XCTAssertFalse(QuantizedWeightStorage(name: "w", weight: q, pairNibbles: false).isPaired)
        }
    }

    /// Whole-weight and row-range dequantization give the same bits from both orders.
    func testDecodeGivesTheSameBitsFromBothOrders() throws {
        for (rows, cols, bs, dq) in [(7, 256, 64, true), (5, 1024, 512, false), (3, 256, 128, true)] {
            let q = try randomQuantizedWeight(rows: rows, cols: cols, blockSize: bs, type: bs == 128 ? .fp4 : .nf4,
                                              double: dq, seed: UInt64(rows * cols))
            let storage = QuantizedWeightStorage(name: "w", weight: q, pairNibbles: true)
            XCTAssertTrue(storage.isPaired)
            try forEachISA { isa in
                let expected = q.dequantize(threads: 1).scalars
                var got = [Float](repeating: .nan, count: rows * cols)
                var view = storage.kernelView
                cq_dequantize_4bit(&view, &got, 2)
                assertBitIdentical(got, expected, "\(isa) dequantize bs \(bs)")
                var part = [Float](repeating: .nan, count: 2 * cols)
                cq_dequantize_rows(&view, 1, 2, &part)
                assertBitIdentical(part, Array(expected[cols..<(3 * cols)]), "\(isa) rows 1..<3 bs \(bs)")
            }
        }
    }

    static let shapes: [KernelTests.Shape] = [
        .init(M: 1, N: 37, K: 256, r: 16, blockSize: 64),
        .init(M: 1, N: 6, K: 1024, r: 4, blockSize: 512, doubleQuant: false),
        .init(M: 2, N: 9, K: 512, r: 3, blockSize: 128, quant: .fp4, bias: false),
        .init(M: 3, N: 21, K: 128, r: 2, blockSize: 64, doubleQuant: false),
        .init(M: 4, N: 13, K: 768, r: 8, blockSize: 64),
        .init(M: 5, N: 110, K: 128, r: 0, blockSize: 64), // a 4-row tile's scales cross a nested block
        .init(M: 9, N: 11, K: 256, r: 16, blockSize: 128, quant: .fp4),
        .init(M: 70, N: 101, K: 512, r: 5, blockSize: 256, doubleQuant: false), // the panel GEMM
    ]

    /// cq_fused_linear_ex over the storage's kernel view (f32, or bf16 compute with `bf16`).
    static func fused(_ s: KernelTests.Shape, _ i: KernelTests.Inputs, _ storage: QuantizedWeightStorage, threads: Int,
                      bf16: Bool = false) -> [Float] {
        var y = [Float](repeating: .nan, count: s.M * s.N)
        let bytes = cq_fused_linear_scratch_bytes(Int64(s.M), Int64(s.N), Int64(s.K), Int32(s.r), Int32(threads))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { scratch.deallocate() }
        var view = storage.kernelView
        let ran = KernelTests.withOptional(i.bias) { bias in
            cq_fused_linear_ex(i.x, Int64(s.M), &view, i.A, i.B, Int32(s.r), i.scaling, bias, &y, scratch, Int32(threads),
                               bf16 ? 1 : 0)
        }
        if bf16 { XCTAssertEqual(ran, 1, "bf16 path taken") }
        return y
    }

    /// bf16 compute at small M over paired weights: within bf16's error of the double reference,
    /// independent of the thread count, and an identity x row gives exactly bf16(W'[n, c]) (which
    /// checks the nibble and x orders element by element).
    func testBF16TilesOverPairedWeights() throws {
        guard cq_cpu_has_avx512_bf16() != 0 else { throw XCTSkip("CPU without AVX512-BF16") }
        for (n, s) in Self.shapes.enumerated() where s.M < 64 {
            let i = try KernelTests.inputs(s, seed: UInt64(700 + n))
            let paired = QuantizedWeightStorage(name: "w", weight: i.q, pairNibbles: true)
            let what = "M=\(s.M) N=\(s.N) K=\(s.K) bs=\(s.blockSize) \(s.quant) dq=\(s.doubleQuant)"
            let y1 = Self.fused(s, i, paired, threads: 1, bf16: true)
            assertClose(y1, KernelTests.reference(s, i), relative: 5e-3, "bf16 paired vs double reference, \(what)")
            assertBitIdentical(Self.fused(s, i, paired, threads: 2, bf16: true), y1, "bf16 paired 2 vs 1 threads, \(what)")
            var e = s
            e.M = 4; e.r = 0; e.bias = false
            let cols = [0, 65, s.blockSize + 3, s.K - 1]
            var xi = try KernelTests.inputs(e, seed: UInt64(700 + n))
            xi.x = [Float](repeating: 0, count: 4 * s.K)
            for (m, c) in cols.enumerated() { xi.x[m * s.K + c] = 1 }
            let y = Self.fused(e, xi, QuantizedWeightStorage(name: "w", weight: xi.q, pairNibbles: true), threads: 2, bf16: true)
            for (m, c) in cols.enumerated() {
                for j in 0..<s.N where y[m * s.N + j].bitPattern != KernelBF16GemvTests.bf16(xi.wdq[j * s.K + c]).bitPattern {
                    XCTFail("\(what): y[\(m), \(j)] = \(y[m * s.N + j]), bf16(W'[\(j), \(c)]) = \(KernelBF16GemvTests.bf16(xi.wdq[j * s.K + c]))")
                    return
                }
            }
        }
    }

    /// The fused linear over a paired weight against the double-precision reference, independent of
    /// the thread count; the panel GEMM (M >= 64) gives the bnb-order weight's bits exactly.
    func testFusedLinearOverPairedWeightsOnEveryISA() throws {
        for (n, s) in Self.shapes.enumerated() {
            let i = try KernelTests.inputs(s, seed: UInt64(500 + n))
            let paired = QuantizedWeightStorage(name: "w", weight: i.q, pairNibbles: true)
            XCTAssertTrue(paired.isPaired)
            let ref = KernelTests.reference(s, i)
            try forEachISA { isa in
                let what = "\(isa) M=\(s.M) N=\(s.N) K=\(s.K) r=\(s.r) bs=\(s.blockSize) \(s.quant) dq=\(s.doubleQuant)"
                let y1 = Self.fused(s, i, paired, threads: 1)
                assertClose(y1, ref, relative: 1e-5, "paired vs double reference, \(what)")
                assertBitIdentical(Self.fused(s, i, paired, threads: 2), y1, "paired 2 vs 1 threads, \(what)")
                assertBitIdentical(Self.fused(s, i, paired, threads: 3), y1, "paired 3 vs 1 threads, \(what)")
                if s.M >= 64 {
                    assertBitIdentical(y1, KernelTests.fused(s, i, threads: 1), "panel GEMM, paired vs bnb order, \(what)")
                }
            }
        }
    }

    /// q/k/v-like groups of paired weights: one parallel region gives the separate calls' bits; a
    /// group mixing orders (or paired block sizes) still gives them, member by member.
    func testGroupsOfPairedWeights() throws {
        let K = 256, M = 2
        var rng = SeededRandom(seed: 9)
        let x = rng.floats(M * K)
        let specs: [(N: Int, bs: Int, pair: Bool)] = [(40, 64, true), (12, 64, true), (12, 64, false), (12, 128, true)]
        let storages = try specs.enumerated().map { n, s in
            QuantizedWeightStorage(name: "w\(n)", weight: try randomQuantizedWeight(rows: s.N, cols: K, blockSize: s.bs,
                                                                                  double: n % 2 == 0, seed: UInt64(n + 20)),
                                   pairNibbles: s.pair)
        }
        let A = specs.map { _ in rng.floats(4 * K, scale: 0.2) }, B = specs.map { rng.floats($0.N * 4, scale: 0.2) }
        func run(_ idx: [Int], threads: Int) -> [[Float]] {
            var views = idx.map { storages[$0].kernelView }
            var outs = idx.map { [Float](repeating: .nan, count: M * specs[$0].N) }
            let N = idx.map { Int64(specs[$0].N) }, r = idx.map { _ in Int32(4) }
            let bytes = cq_fused_linear_group_scratch_bytes(Int64(M), Int32(idx.count), N, Int64(K), r, 0, Int32(threads))
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
            defer { scratch.deallocate() }
            views.withUnsafeMutableBufferPointer { v in
                var members: [cq_linear_member] = []
                for (j, s) in idx.enumerated() {
                    A[s].withUnsafeBufferPointer { a in
                        B[s].withUnsafeBufferPointer { b in
                            outs[j].withUnsafeMutableBufferPointer { y in
                                members.append(cq_linear_member(w: v.baseAddress! + j, A: a.baseAddress, B: b.baseAddress,
                                                                r: 4, scaling: 0.5, bias: nil, y: y.baseAddress, xa: nil))
                            }
                        }
                    }
                }
                cq_fused_linear_group(x, Int64(M), Int32(idx.count), &members, 0, nil, scratch, Int32(threads), 0)
            }
            return outs
        }
        try forEachISA { isa in
            let alone = (0..<specs.count).map { run([$0], threads: 1)[0] }
            for idx in [[0, 1], [0, 1, 2], [1, 3], [3, 0, 2]] {
                for threads in [1, 2] {
                    let got = run(idx, threads: threads)
                    for (j, s) in idx.enumerated() {
                        assertBitIdentical(got[j], alone[s], "\(isa) group \(idx) member \(s), \(threads) threads")
                    }
                }
            }
        }
    }
}
