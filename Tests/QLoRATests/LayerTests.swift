import XCTest
@testable import QLoRA
import CQLoRAKernels

final class LayerTests: XCTestCase {
    func randomLayer(out: Int, inF: Int, config: QLoraConfig = QLoraConfig(), bias: Bool = true, seed: UInt64 = 7) throws -> QuantizedLinear {
        var rng = SeededRandom(seed: seed)
        let w = try Tensor(shape: [out, inF], scalars: rng.floats(out * inF, scale: 0.2))
        let b = bias ? try Tensor(shape: [out], scalars: rng.floats(out, scale: 0.1)) : nil
        let layer = try QuantizedLinear(weight: w, bias: b, config: config, name: "proj", seed: seed)
        let (a, _) = layer.loraWeights
        try layer.setLoraWeights(a: a, b: Tensor(shape: [out, config.rank], scalars: rng.floats(out * config.rank, scale: 0.05)))
        return layer
    }

    func testFreshLayerEqualsItsBase() throws {
        var rng = SeededRandom(seed: 3)
        let w = try Tensor(shape: [24, 40], scalars: rng.floats(960))
        let layer = try QuantizedLinear(weight: w, config: QLoraConfig(), seed: 9)
        let (a, b) = layer.loraWeights
        XCTAssertEqual(a.shape, [8, 40]); XCTAssertEqual(b.shape, [24, 8])
        XCTAssertTrue(b.scalars.allSatisfy { $0 == 0 })
        let bound = 1 / Float(40).squareRoot()
        XCTAssertTrue(a.scalars.allSatisfy { abs($0) <= bound })
        XCTAssertGreaterThan(Set(a.scalars).count, 300, "A is random")
        let x = try Tensor(shape: [3, 40], scalars: rng.floats(120))
        let y = try layer.forward(x)
        let wq = layer.quantizedWeight.dequantize().scalars
        var expected = [Float](repeating: 0, count: 72)
        for m in 0..<3 { for n in 0..<24 { var acc = 0.0; for k in 0..<40 { acc += Double(x.scalars[m * 40 + k]) * Double(wq[n * 40 + k]) }; expected[m * 24 + n] = Float(acc) } }
        assertClose(y.scalars, expected, relative: 1e-5, "fresh layer = base")
    }

    func testCountsAndMemory() throws {
        let layer = try randomLayer(out: 64, inF: 128)
        XCTAssertEqual(layer.numTrainableParameters, 8 * (64 + 128))
        let q = layer.quantizedWeight
        let base = q.memoryBytes + 4 * (8 * 128 + 64 * 8) + 4 * 64
        XCTAssertEqual(layer.memoryBytes, base)
        XCTAssertFalse(layer.isWeightCached)
        try layer.enableWeightCaching()
        XCTAssertTrue(layer.isWeightCached)
        XCTAssertEqual(layer.memoryBytes, base + 64 * 128 * 4)
        layer.disableWeightCaching()
        XCTAssertFalse(layer.isWeightCached)
        XCTAssertEqual(layer.memoryBytes, base)
    }

    func testConfigCacheDequantizedStartsCached() throws {
        var config = QLoraConfig(); config.cacheDequantized = true
        XCTAssertTrue(try randomLayer(out: 8, inF: 64, config: config).isWeightCached)
    }

    /// fused == unfused and cached == on-the-fly within 1e-5 on awkward shapes.
    func testModesAgreeOnRandomShapes() throws {
        let shapes: [(m: [Int], out: Int, inF: Int, bs: Int, type: QuantType, dq: Bool)] = [
            ([1, 64], 48, 64, 64, .nf4, true), ([5, 33], 17, 33, 32, .fp4, false), ([2, 3, 70], 30, 70, 64, .nf4, true),
            ([7, 200], 65, 200, 128, .nf4, false), ([1, 97], 9, 97, 32, .fp4, true), ([16, 96], 40, 96, 64, .nf4, true),
        ]
        for (i, s) in shapes.enumerated() {
            var config = QLoraConfig(); config.blockSize = s.bs; config.quantType = s.type; config.doubleQuant = s.dq; config.rank = 4
            let layer = try randomLayer(out: s.out, inF: s.inF, config: config, bias: i % 2 == 0, seed: UInt64(i + 11))
            var rng = SeededRandom(seed: UInt64(100 + i))
            let x = try Tensor(shape: s.m, scalars: rng.floats(s.m.reduce(1, *)))
            var results: [String: [Float]] = [:]
            for mode in [ExecutionMode.onTheFly, .cached] {
                for fusion in [true, false] {
                    let g = Graph()
                    g.output("y", try layer(g.input("x", shape: s.m)))
                    results["\(mode) \(fusion)"] = try g.compile(CompileOptions(mode: mode, threads: 2, fusion: fusion)).run(["x": x])["y"]!.scalars
                }
            }
            let reference = results["onTheFly true"]!
            for (k, v) in results { assertClose(v, reference, relative: 1e-5, "shape \(s) \(k)") }
        }
    }

    func testOneAndTwoThreadsGiveIdenticalBits() throws {
        let layer = try randomLayer(out: 96, inF: 160)
        var rng = SeededRandom(seed: 5)
        for m in [1, 4, 33] {
            let x = try Tensor(shape: [m, 160], scalars: rng.floats(m * 160))
            for mode in [ExecutionMode.onTheFly, .cached] {
                for fusion in [true, false] {
                    var outs: [[Float]] = []
                    for threads in [1, 2] {
                        let g = Graph()
                        g.output("y", try layer(g.input("x", shape: [m, 160])))
                        outs.append(try g.compile(CompileOptions(mode: mode, threads: threads, fusion: fusion)).run(["x": x])["y"]!.scalars)
                    }
                    assertBitIdentical(outs[0], outs[1], "M=\(m) \(mode) fusion=\(fusion) 1 vs 2 threads")
                }
            }
        }
    }

    func testSetLoraWeightsUpdatesCompiledPlans() throws {
        let layer = try randomLayer(out: 16, inF: 64)
        var rng = SeededRandom(seed: 1)
        let x = try Tensor(shape: [2, 64], scalars: rng.floats(128))
        let before = try layer.forward(x)
        let (a, b) = layer.loraWeights
        try layer.setLoraWeights(a: a, b: Tensor(shape: b.shape, scalars: b.scalars.map { $0 * 3 }))
        XCTAssertNotEqual(try layer.forward(x).scalars, before.scalars)
    }

    func testErrors() throws {
        let layer = try randomLayer(out: 16, inF: 64)
        func expectShape(_ body: () throws -> Void) {
            XCTAssertThrowsError(try body()) { e in
                guard case QLoraError.shapeMismatch = e else { return XCTFail("expected shapeMismatch, got \(e)") }
            }
        }
        func expectArgument(_ body: () throws -> Void) {
            XCTAssertThrowsError(try body()) { e in
                guard case QLoraError.invalidArgument = e else { return XCTFail("expected invalidArgument, got \(e)") }
            }
        }
        expectShape { _ = try layer.forward(Tensor.zeros(shape: [2, 63])) }
        expectShape { _ = try layer.forward(Tensor.zeros(shape: [64])) .shape }
        expectShape { _ = try layer.forward(Tensor.zeros(shape: [1, 1, 1, 64])) }
        expectShape { try layer.setLoraWeights(a: Tensor.zeros(shape: [4, 64]), b: Tensor.zeros(shape: [16, 8])) }
        expectShape { try layer.setLoraWeights(a: Tensor.zeros(shape: [8, 64]), b: Tensor.zeros(shape: [16, 4])) }
        expectArgument { try layer.setLoraWeights(a: Tensor(shape: [8, 64], scalars: [Float](repeating: .nan, count: 512)), b: Tensor.zeros(shape: [16, 8])) }
        expectShape { _ = try Tensor(shape: [2, 3], scalars: [1, 2]) }
        expectShape { _ = try QuantizedLinear(weight: Tensor.zeros(shape: [64]), config: QLoraConfig()) }
        expectShape { _ = try QuantizedLinear(weight: Tensor.zeros(shape: [4, 64]), bias: Tensor.zeros(shape: [3]), config: QLoraConfig()) }
        XCTAssertThrowsError(try QuantizedLinear(weight: Tensor(shape: [2, 64], scalars: [Float](repeating: 1, count: 127) + [.infinity]))) { e in
            guard case let QLoraError.quantization(tensor, reason) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(tensor, "linear.weight"); XCTAssert(reason.contains("127"), reason)
        }
        var bad = QLoraConfig(); bad.rank = 0
        XCTAssertThrowsError(try QuantizedLinear(inFeatures: 4, outFeatures: 4, config: bad)) { e in
            guard case QLoraError.invalidConfig(field: "rank", _) = e else { return XCTFail("\(e)") }
        }
        expectArgument { _ = try QuantizedLinear(inFeatures: 0, outFeatures: 4) }
        // Plans: unknown, missing, misshapen and non-finite inputs.
        let g = Graph()
        g.output("y", try layer(g.input("x", shape: [2, 64])))
        let plan = try g.compile()
        expectArgument { _ = try plan.run(["x": Tensor.zeros(shape: [2, 64]), "z": Tensor.zeros(shape: [1])]) }
        expectArgument { _ = try plan.run([:]) }
        expectShape { _ = try plan.run(["x": Tensor.zeros(shape: [3, 64])]) }
        expectArgument { _ = try plan.run(["x": Tensor(shape: [2, 64], scalars: [Float](repeating: .nan, count: 128))]) }
        expectArgument { _ = try g.compile(CompileOptions(threads: 0)) }
        // Recording: a layer called on a value of the wrong width.
        expectShape { _ = try layer(Graph().input("x", shape: [2, 32])) }
    }
}

final class ComputeTypeTests: XCTestCase {
    /// computeType .bfloat16 reaches the kernels: within bf16 error of f32 (≤ 5e-3 of max|y|), and
    /// different bits where the CPU has AVX512-BF16 (the panel path runs at M ≥ 64).
    func testBFloat16ComputeIsCloseToFloat32() throws {
        var rng = SeededRandom(seed: 21)
        var config = QLoraConfig(); config.rank = 8
        let w = try Tensor(shape: [96, 256], scalars: rng.floats(96 * 256, scale: 0.1))
        let f32 = try QuantizedLinear(weight: w, config: config, seed: 3)
        config.computeType = .bfloat16
        let bf16 = try QuantizedLinear(weight: w, config: config, seed: 3)
        let b = try Tensor(shape: [96, 8], scalars: rng.floats(96 * 8, scale: 0.05))
        try f32.setLoraWeights(a: f32.loraWeights.a, b: b)
        try bf16.setLoraWeights(a: f32.loraWeights.a, b: b)
        let x = try Tensor(shape: [128, 256], scalars: rng.floats(128 * 256))
        let yf = try f32.forward(x), yb = try bf16.forward(x)
        assertClose(yb.scalars, yf.scalars, relative: 5e-3, "bf16 vs f32")
        if cq_cpu_has_avx512_bf16() != 0 {
            XCTAssertNotEqual(yb.scalars, yf.scalars, "bf16 compute ran")
        } else {
            XCTAssertEqual(yb.scalars, yf.scalars, "f32 fallback without AVX512-BF16")
        }
        let g = Graph()
        g.output("y", try bf16(g.input("x", shape: [128, 256])))
        let plan = try g.compile(CompileOptions(threads: 2, computeType: .bfloat16))
        XCTAssert(plan.summary.contains("compute bfloat16"), plan.summary)
        XCTAssertEqual(try plan.run(["x": x])["y"]!.scalars, yb.scalars)
    }
}
