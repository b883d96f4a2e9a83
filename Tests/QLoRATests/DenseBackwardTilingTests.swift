import CQLoRAKernels
import XCTest
@testable import QLoRA

/// cq_matmul_nn (dX = dY·W for an f32 W, e.g. the tied lm_head's backward) runs on the backward
/// GEMM (gemm_kn.c, W's rows packed as they lie): it equals a double-precision loop within float rounding,
/// and gives the same bits for 1 and 2 threads, on shapes with partial panels and chunks.
final class DenseBackwardTilingTests: XCTestCase {
    func testMatmulNNEqualsTheLoopAndIsThreadCountIndependent() {
        for (m, n, k) in [(37, 50, 150), (1, 300, 7), (64, 9, 288), (33, 1000, 145)] {
            var rng = SeededRandom(seed: UInt64(m * 1000 + k))
            let dy = rng.floats(m * n), w = rng.floats(n * k)
            var exact = [Double](repeating: 0, count: m * k), scale = [Double](repeating: 0, count: m * k)
            for i in 0..<m {
                for r in 0..<n {
                    let g = Double(dy[i * n + r])
                    for j in 0..<k { exact[i * k + j] += g * Double(w[r * k + j]); scale[i * k + j] += abs(g * Double(w[r * k + j])) }
                }
            }
            var first: [Float]?
            for threads in [1, 2] {
                var dx = [Float](repeating: .nan, count: m * k)
                cq_matmul_nn(dy, Int64(m), w, Int64(n), Int64(k), &dx, Int32(threads))
                for i in 0..<(m * k) {
                    XCTAssertEqual(Double(dx[i]), exact[i], accuracy: 1e-6 * scale[i] + 1e-30, "dY·W \(m)x\(n)x\(k) [\(i)], \(threads) threads")
                }
                if let first { assertBitIdentical(dx, first, "dY·W \(m)x\(n)x\(k), 1 vs 2 threads") } else { first = dx }
            }
        }
    }

    /// cq_matmul_nn_q4 (dX through the 4-bit projections, weight rows decoded into tile blocks): a
    /// Llama training step over 80 tokens gives the same loss and LoRA gradients bit for bit with 1
    /// and 2 threads.
    func testLlamaGradientsOverSeveralRowBlocksAreThreadCountIndependent() throws {
        let ids = try IntTensor(shape: [2, 40], scalars: (0..<80).map { Int32(($0 * 7 + 3) % 16) })
        var runs: [[Float]] = []
        for threads in [1, 2] {
            let m = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
            let store = try ParameterStore(gathering: m.trainableParameters)
            let g = Graph()
            let input = g.input("input_ids", shape: [2, 40], element: .int32)
            let loss = try g.causalLMLoss(try m.record(inputIds: input).logits, labels: input, label: "loss")
            g.output("loss", loss)
            try g.backward(from: loss, parameters: store)
            let l = try g.compile(CompileOptions(threads: threads)).run([:], ids: ["input_ids": ids])["loss"]!.scalars
            runs.append(l + store.flatGradients)
        }
        XCTAssertGreaterThan(runs[0].dropFirst().map(abs).max()!, 0)
        assertBitIdentical(runs[0], runs[1], "loss and gradients, 1 vs 2 threads")
    }
}
