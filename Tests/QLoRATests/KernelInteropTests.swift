import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The fused and cached linear kernels on bitsandbytes 0.50.2 weights (NF4, double quant) with the
/// PEFT 0.21.2 LoRA layer outputs from ../shared/reference (lora_cases in manifest.json).
final class KernelInteropTests: XCTestCase {
    struct Case { let name: String, weight: String, out: Int, inF: Int }
    static let cases = [Case(name: "lora_256x512", weight: "w256x512", out: 256, inF: 512),
                        Case(name: "lora_100x70", weight: "w100x70", out: 100, inF: 70),
                        Case(name: "lora_96x160", weight: "w96x160", out: 96, inF: 160)]
    static let rank = 8, scaling: Float = 2.0

    static func weight(_ c: Case) throws -> QuantizedTensor {
        let state = DoubleQuantState(quantizedAbsmax: try Reference.bytes("\(c.weight)_dq_qabsmax.u8"),
                                     absmax2: try Reference.floats("\(c.weight)_dq_absmax2.f32"),
                                     code2: try Reference.floats("\(c.weight)_dq_code2.f32"),
                                     offset: try Reference.floats("\(c.weight)_dq_offset.f32")[0], blockSize2: 256)
        return try QuantizedTensor(shape: [c.out, c.inF], quantType: .nf4, blockSize: 64,
                                   packed: try Reference.bytes("\(c.weight)_nf4_packed.u8"), statistics: .double(state))
    }

    static func fused(_ q: QuantizedTensor, x: [Float], M: Int, A: [Float], B: [Float], bias: [Float], threads: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: M * q.shape[0])
        let bytes = cq_fused_linear_scratch_bytes(Int64(M), Int64(q.shape[0]), Int64(q.shape[1]), Int32(rank), Int32(threads))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { scratch.deallocate() }
        q.withKernelView { view in
            cq_fused_linear(x, Int64(M), view, A, B, Int32(rank), scaling, bias, &y, scratch, Int32(threads))
        }
        return y
    }

    static func dense(_ w: [Float], out: Int, inF: Int, x: [Float], M: Int, A: [Float], B: [Float], bias: [Float]) -> [Float] {
        var y = [Float](repeating: .nan, count: M * out)
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(cq_dense_linear_scratch_bytes(Int64(M), Int64(out), Int64(inF), Int32(rank), 2), 64),
                                                       alignment: 64)
        defer { scratch.deallocate() }
        cq_dense_linear(x, Int64(M), w, Int64(out), Int64(inF), A, B, Int32(rank), scaling, bias, &y, scratch, 2)
        return y
    }

    /// 2-D (M = 4) and 3-D (2 x 5 rows) inputs on the small-M path; the 2-D input repeated 20 times
    /// (M = 80) on the panel path. All within 1e-5 of PEFT's float32 output.
    func testFusedAndCachedMatchPEFTOutputs() throws {
        for c in Self.cases {
            let q = try Self.weight(c)
            let A = try Reference.floats("\(c.name)_A.f32"), B = try Reference.floats("\(c.name)_B.f32")
            let bias = try Reference.floats("\(c.name)_bias.f32")
            let wdq = try Reference.floats("\(c.name)_W_dequant.f32")
            XCTAssertEqual(q.dequantize(threads: 1).scalars, wdq, "\(c.name): our dequantization is the weight PEFT used")
            let x2 = try Reference.floats("\(c.name)_x2d_x.f32"), y2 = try Reference.floats("\(c.name)_x2d_y.f32")
            let x3 = try Reference.floats("\(c.name)_x3d_x.f32"), y3 = try Reference.floats("\(c.name)_x3d_y.f32")
            let big = Array([[Float]](repeating: x2, count: 20).joined()), yBig = Array([[Float]](repeating: y2, count: 20).joined())
            for (x, y, M, label) in [(x2, y2, 4, "2-D"), (x3, y3, 10, "3-D"), (big, yBig, 80, "2-D x 20")] {
                let f1 = Self.fused(q, x: x, M: M, A: A, B: B, bias: bias, threads: 1)
                assertClose(f1, y, relative: 1e-5, "\(c.name) \(label): fused vs PEFT")
                assertBitIdentical(Self.fused(q, x: x, M: M, A: A, B: B, bias: bias, threads: 2), f1,
                                   "\(c.name) \(label): fused 2 vs 1 threads")
                assertClose(Self.dense(wdq, out: c.out, inF: c.inF, x: x, M: M, A: A, B: B, bias: bias), y,
                            relative: 1e-5, "\(c.name) \(label): cached vs PEFT")
            }
        }
    }
}
