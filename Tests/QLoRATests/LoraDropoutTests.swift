import Foundation
import XCTest
@testable import QLoRA

/// LoRA dropout: identity in eval, a mask that depends only on (seed, layer, step, element) so the
/// thread count never changes it, and a gradient equal to the explicitly masked formula.
final class LoraDropoutTests: XCTestCase {
    func dropped(_ x: Tensor, context: LoraDropout, threads: Int) throws -> Tensor {
        let g = Graph()
        let y = try g.dropout(g.input("x", shape: x.shape), context: context, stream: 42, label: "drop")
        g.output("y", y)
        return try g.compile(CompileOptions(threads: threads)).run(["x": x])["y"]!
    }

    func testIdentityInEvalAndTheSameMaskForAnyThreadCount() throws {
        var rng = SeededRandom(seed: 4)
        let n = 70_000   // above the kernels' 32 K single-thread threshold, so two threads really split it
        let x = try Tensor(shape: [n], scalars: rng.floats(n))
        let context = try LoraDropout(probability: 0.25, seed: 123)
        context.isTraining = false
        assertBitIdentical(try dropped(x, context: context, threads: 2).scalars, x.scalars, "eval: identity")
        context.isTraining = true
        context.step = 7
        let one = try dropped(x, context: context, threads: 1), two = try dropped(x, context: context, threads: 2)
        assertBitIdentical(one.scalars, two.scalars, "1 vs 2 threads")
        // The mask is the counter-based one: kept elements scaled by 1/(1-p), the others zero.
        let scale: Float = 1 / 0.75
        let expected = (0..<n).map { context.keeps(stream: 42, index: $0) ? x.scalars[$0] * scale : 0 }
        assertBitIdentical(one.scalars, expected, "mask from (seed, stream, step, element)")
        let droppedFraction = Double(expected.indices.filter { !context.keeps(stream: 42, index: $0) }.count) / Double(n)
        XCTAssertEqual(droppedFraction, 0.25, accuracy: 0.01)
        // Same seed and step: same mask from a fresh context; another step or seed: another mask.
        let again = try LoraDropout(probability: 0.25, seed: 123)
        again.isTraining = true
        again.step = 7
        assertBitIdentical(try dropped(x, context: again, threads: 2).scalars, one.scalars, "same seed, same step")
        context.step = 8
        XCTAssertNotEqual(try dropped(x, context: context, threads: 1).scalars, one.scalars)
        XCTAssertThrowsError(try LoraDropout(probability: 1, seed: 0))
    }

    /// dA and dB of an mse loss through a layer with dropout p = 0.3 equal the explicit formulas
    /// with the masked input x̃ = x ⊙ mask / (1 − p):
    /// y = x·Wᵀ + s·(x̃·Aᵀ)·Bᵀ, dY = 2/n·(y − t), dB = s·dYᵀ·(x̃·Aᵀ), dA = s·(dY·B)ᵀ·x̃.
    func testDropoutChangesTheGradientAsTheMaskedFormulaSays() throws {
        let m = 6, inF = 16, outF = 12, r = 4
        var rng = SeededRandom(seed: 8)
        var config = QLoraConfig()
        config.rank = r
        config.alpha = 8
        let layer = try QuantizedLinear(weight: Tensor(shape: [outF, inF], scalars: rng.floats(outF * inF)), config: config, name: "proj", seed: 1)
        let a = rng.floats(r * inF, scale: 0.3), b = rng.floats(outF * r, scale: 0.3)
        try layer.setLoraWeights(a: Tensor(shape: [r, inF], scalars: a), b: Tensor(shape: [outF, r], scalars: b))
        let context = try LoraDropout(probability: 0.3, seed: 5)
        XCTAssertFalse(context.isTraining, "a new context is in eval mode")
        context.isTraining = true
        context.step = 3
        layer.dropout = context
        let x = rng.floats(m * inF), t = rng.floats(m * outF)
        let g = Graph()
        let y = try layer(g.input("x", shape: [m, inF]))
        let loss = try g.mseLoss(y, target: g.input("t", shape: [m, outF]))
        g.output("loss", loss)
        let store = try ParameterStore(gathering: layer.trainableParameters)
        try g.backward(from: loss, parameters: store)
        _ = try g.compile(CompileOptions(threads: 2)).run(["x": Tensor(shape: [m, inF], scalars: x), "t": Tensor(shape: [m, outF], scalars: t)])

        let w = layer.quantizedWeight.dequantize(threads: 1).scalars.map(Double.init)
        let s = Double(layer.scaling), keepScale = Double(Float(1) / Float(0.7))
        let stream = LoraDropout.stream(for: "proj")
        let xt = (0..<(m * inF)).map { context.keeps(stream: stream, index: $0) ? Double(x[$0]) * keepScale : 0 }
        XCTAssert(xt.contains(0) && xt.contains { $0 != 0 }, "the mask drops some elements and keeps others")
        var xa = [Double](repeating: 0, count: m * r), dy = [Double](repeating: 0, count: m * outF)
        for i in 0..<m {
            for k in 0..<r { xa[i * r + k] = (0..<inF).reduce(0.0) { $0 + xt[i * inF + $1] * Double(a[k * inF + $1]) } }
            for o in 0..<outF {
                var v = (0..<inF).reduce(0.0) { $0 + Double(x[i * inF + $1]) * w[o * inF + $1] }
                v += s * (0..<r).reduce(0.0) { $0 + xa[i * r + $1] * Double(b[o * r + $1]) }
                dy[i * outF + o] = 2.0 / Double(m * outF) * (v - Double(t[i * outF + o]))
            }
        }
        var dA = [Double](repeating: 0, count: r * inF), dB = [Double](repeating: 0, count: outF * r)
        for i in 0..<m {
            for k in 0..<r {
                let dyb = (0..<outF).reduce(0.0) { $0 + dy[i * outF + $1] * Double(b[$1 * r + k]) }
                for c in 0..<inF { dA[k * inF + c] += s * dyb * xt[i * inF + c] }
                for o in 0..<outF { dB[o * r + k] += s * dy[i * outF + o] * xa[i * r + k] }
            }
        }
        assertClose(store.gradient(0).scalars, dA.map(Float.init), relative: 1e-5, "dA with dropout")
        assertClose(store.gradient(1).scalars, dB.map(Float.init), relative: 1e-5, "dB with dropout")
    }

    func testGaussianInitHasStdOneOverRankAndZeroB() throws {
        var config = QLoraConfig()
        config.rank = 8
        let layer = try QuantizedLinear(inFeatures: 256, outFeatures: 16, config: config, name: "p", seed: 1)
        try layer.initializeLora(.gaussian, seed: 3)
        let a = layer.loraWeights.a.scalars.map(Double.init)
        let mean = a.reduce(0, +) / Double(a.count)
        let std = (a.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(a.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.01)
        XCTAssertEqual(std, 1.0 / 8, accuracy: 0.006)
        XCTAssert(layer.loraWeights.b.scalars.allSatisfy { $0 == 0 })
        try layer.initializeLora(.kaimingUniform, seed: 3)
        let bound = 1 / Float(256).squareRoot()
        XCTAssert(layer.loraWeights.a.scalars.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(layer.loraWeights.a.scalars.map(abs).max()!, 0.9 * bound)
    }
}
