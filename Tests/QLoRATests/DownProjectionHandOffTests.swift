import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The forward hands x·Aᵀ to the backward: `cq_lora_down` against a double-precision x·Aᵀ, the
/// fused kernels given it bitwise equal to the ones computing it, and a training plan in which one
/// lora_down step feeds both the fused linear and the backward, with the inference forward's bits
/// (the gradients themselves are checked against PEFT by AutodiffReferenceTests, which runs
/// through this path).
final class DownProjectionHandOffTests: XCTestCase {
    func testKernelsGivenXATimesAGiveTheSameY() throws {
        for s in KernelTests.shapes where s.r > 0 {
            let i = try KernelTests.inputs(s, seed: 7)
            var expected = [Float](repeating: 0, count: s.M * s.r)
            for m in 0..<s.M { for j in 0..<s.r {
                var acc = 0.0
                for k in 0..<s.K { acc += Double(i.x[m * s.K + k]) * Double(i.A[j * s.K + k]) }
                expected[m * s.r + j] = Float(acc)
            } }
            for threads in [1, 2] {
                let what = "M=\(s.M) N=\(s.N) K=\(s.K) r=\(s.r), \(threads) threads"
                var y = [Float](repeating: .nan, count: s.M * s.N), xa = [Float](repeating: .nan, count: s.M * s.r)
                cq_lora_down(i.x, Int64(s.M), Int64(s.K), i.A, Int32(s.r), &xa, Int32(threads))
                assertClose(xa, expected, relative: 1e-5, "x·Aᵀ, \(what)")
                let bytes = max(cq_fused_linear_scratch_bytes(Int64(s.M), Int64(s.N), Int64(s.K), Int32(s.r), Int32(threads)),
                                cq_dense_linear_scratch_bytes(Int64(s.M), Int64(s.N), Int64(s.K), Int32(s.r), Int32(threads)))
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
                defer { scratch.deallocate() }
                i.q.withKernelView { view in
                    KernelTests.withOptional(i.bias) { bias in
                        _ = cq_fused_linear_given_xa(i.x, Int64(s.M), view, xa, i.B, Int32(s.r), i.scaling, bias, &y, scratch, Int32(threads), 0)
                    }
                }
                assertBitIdentical(y, KernelTests.fused(s, i, threads: threads), "on-the-fly y, \(what)")
                y = [Float](repeating: .nan, count: s.M * s.N)
                KernelTests.withOptional(i.bias) { bias in
                    cq_dense_linear_given_xa(i.x, Int64(s.M), i.wdq, Int64(s.N), Int64(s.K), xa, i.B, Int32(s.r), i.scaling, bias, &y,
                                             scratch, Int32(threads))
                }
                assertBitIdentical(y, KernelTests.dense(s, i, threads: threads), "cached y, \(what)")
            }
        }
    }

    func testTrainingPlanComputesXATimesAOnceWithTheInferenceBits() throws {
        let c = try LoraReferenceCase("lora_100x70")
        let store = try ParameterStore(gathering: c.layer.trainableParameters)
        for mode in [ExecutionMode.onTheFly, .cached] {
            let g = Graph()
            let x = g.input("x", shape: [12, 70])
            let y = try c.layer(x)
            let loss = try g.mseLoss(y, target: g.input("t", shape: y.shape))
            g.output("loss", loss)
            try g.backward(from: loss, parameters: store)
            let plan = try g.compile(CompileOptions(mode: mode, threads: 1))
            // One lora_down step feeding the fused step (given x·Aᵀ) and the backward; no matmul recomputes x·Aᵀ.
            XCTAssertEqual(plan.steps.filter { $0.kernel.name.hasSuffix("(x·Aᵀ given)") }.count, 1, plan.summary)
            XCTAssertEqual(plan.steps.filter { $0.kernel.name == "lora_down(x·Aᵀ)" }.count, 1, plan.summary)
            XCTAssertFalse(plan.steps.contains { $0.kernel.name == "matmul(sgemm)" }, plan.summary)
            XCTAssertFalse(plan.ir.nodes.contains { $0.op.is(MatmulOp.self) }, "\(mode)")
            // The training forward's prediction is bitwise the inference plan's.
            g.output("y", y)
            var rng = SeededRandom(seed: 5)
            let xs = try Tensor(shape: [12, 70], scalars: rng.floats(12 * 70))
            let ys = try g.compile(CompileOptions(mode: mode, threads: 1)).run(["x": xs, "t": Tensor.zeros(shape: y.shape)])["y"]!
            let inference = Graph()
            inference.output("y", try c.layer(inference.input("x", shape: [12, 70])))
            assertBitIdentical(ys.scalars, try inference.compile(CompileOptions(mode: mode, threads: 1)).run(["x": xs])["y"]!.scalars, "\(mode) y")
        }
        // Inference: the same fused kernel without the second output.
        let g = Graph()
        g.output("y", try c.layer(g.input("x", shape: [12, 70])))
        let plan = try g.compile(CompileOptions(threads: 1))
        XCTAssertEqual(plan.steps.map(\.kernel.name), ["fused_qlora_linear(on-the-fly)"])
    }
}
