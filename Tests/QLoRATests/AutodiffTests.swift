import XCTest
@testable import QLoRA

/// Reverse mode against the bitsandbytes + PEFT training-step references (loss, grad_A, grad_B,
/// grad_x), fused and unfused, 1 and 2 threads (bitwise equal).
final class AutodiffReferenceTests: XCTestCase {
    func loadCase(_ name: String) throws -> (layer: QuantizedLinear, files: [String: [String: Any]]) {
        let c = try LoraReferenceCase(name)
        return (c.layer, c.files)
    }

    func testGradientsMatchReference() throws {
        for name in ["lora_96x160", "lora_100x70", "lora_256x512"] {
            let (layer, files) = try loadCase(name)
            func load(_ key: String) throws -> Tensor { try Reference.tensor(files[key]!["file"] as! String, shape: files[key]!["shape"] as! [Int]) }
            let store = try ParameterStore(gathering: layer.trainableParameters)
            for kind in ["x2d", "x3d"] {
                let x = try load("\(kind)_x"), target = try load("\(kind)_target")
                var firstRun: [[Float]]?
                // On the fly (1 and 2 threads bitwise equal, fused and unfused), then the cached and auto modes
                // (the frozen weight's f32 copy then also serves dY·W).
                for (mode, fusion, threads) in [(ExecutionMode.onTheFly, true, 1), (.onTheFly, true, 2), (.onTheFly, false, 1), (.onTheFly, false, 2),
                                                (.cached, true, 2), (.auto, true, 2)] {
                    do {
                        let g = Graph()
                        let xv = g.input("x", shape: x.shape)
                        let loss = try g.mseLoss(try layer(xv), target: g.input("target", shape: target.shape))
                        g.output("loss", loss)
                        try g.backward(from: loss, parameters: store, inputGradients: ["grad_x": xv])
                        let plan = try g.compile(CompileOptions(mode: mode, threads: threads, fusion: fusion))
                        // Fused, the forward runs on the fly too: no step makes an f32 copy of the weight
                        // (unfused, the recorded forward's own dequantize step stays, as for inference).
                        if fusion && mode == .onTheFly { XCTAssertFalse(plan.steps.contains { $0.kernel.name == "dequantize" }, "\(name): no f32 copy of the weight") }
                        let out = try plan.run(["x": x, "target": target])
                        let what = "\(name) \(kind) \(mode) fusion=\(fusion) threads=\(threads)"
                        assertClose(out["loss"]!.scalars, try load("\(kind)_loss").scalars, relative: 1e-4, "\(what) loss")
                        assertClose(store.gradients[0].tensor.scalars, try load("\(kind)_grad_A").scalars, relative: 1e-4, "\(what) grad_A")
                        assertClose(store.gradients[1].tensor.scalars, try load("\(kind)_grad_B").scalars, relative: 1e-4, "\(what) grad_B")
                        XCTAssertEqual(out["grad_x"]!.shape, x.shape)
                        assertClose(out["grad_x"]!.scalars, try load("\(kind)_grad_x").scalars, relative: 1e-4, "\(what) grad_x")
                        let bits = [out["loss"]!.scalars, store.gradients[0].tensor.scalars, store.gradients[1].tensor.scalars, out["grad_x"]!.scalars]
                        if threads == 1 { firstRun = bits } else if mode == .onTheFly {
                            for (a, b) in zip(firstRun!, bits) { assertBitIdentical(b, a, "\(what) vs 1 thread") }
                        }
                    }
                }
            }
        }
    }

    func testFourBitWeightGetsNoGradientAndFrozenWeightMatmulRunsOnTheFly() throws {
        let (layer, files) = try loadCase("lora_100x70")
        let x = try Reference.tensor(files["x2d_x"]!["file"] as! String, shape: files["x2d_x"]!["shape"] as! [Int])
        let g = Graph()
        let xv = g.input("x", shape: x.shape)
        let y = try layer(xv)
        let loss = try g.mseLoss(y, target: g.input("t", shape: y.shape))
        g.output("loss", loss)
        try g.backward(from: loss, inputGradients: ["dx": xv])
        let plan = try g.compile(CompileOptions(threads: 1))
        XCTAssertTrue(plan.steps.contains { $0.kernel.name == "matmul_nn(4-bit on-the-fly)" })
        // The forward is still fused (the base linear; the LoRA branch's x·Aᵀ is kept for the backward).
        XCTAssertTrue(plan.steps.contains { $0.kernel.name.hasPrefix("fused_qlora_linear") }, plan.summary)
        XCTAssertFalse(plan.steps.contains { $0.kernel.name == "dequantize" }, plan.summary)
        // No node computes a [out, in] gradient: the frozen weight gets none.
        XCTAssertFalse(plan.ir.nodes.contains { !$0.op.isLeaf && $0.type.shape == [100, 70] })
    }
}

/// Each op's vector-Jacobian product against central finite differences of a double-precision
/// forward written here, through L = mean((f(inputs) − target)²).
final class VJPFiniteDifferenceTests: XCTestCase {
    typealias Forward = ([[Double]]) -> [Double]

    /// Builds f on graph inputs "in0"..., computes every input's gradient with a plan, and compares
    /// with finite differences of `reference` (f in double precision).
    func check(_ what: String, shapes: [[Int]], ids: (shape: [Int], values: [Int32])? = nil, seed: UInt64 = 7,
               build: (Graph, [Value], Value?) throws -> Value, reference: Forward, file: StaticString = #filePath, line: UInt = #line) throws {
        var rng = SeededRandom(seed: seed)
        let inputs = shapes.map { rng.floats($0.reduce(1, *)) }
        let g = Graph()
        let values = shapes.enumerated().map { g.input("in\($0.offset)", shape: $0.element) }
        let idValue = ids.map { g.input("ids", shape: $0.shape, element: .int32) }
        let y = try build(g, values, idValue)
        let target = rng.floats(y.type.count)
        let loss = try g.mseLoss(y, target: g.input("target", shape: y.shape))
        g.output("loss", loss)
        try g.backward(from: loss, inputGradients: Dictionary(uniqueKeysWithValues: values.enumerated().map { ("grad\($0.offset)", $0.element) }))
        let plan = try g.compile(CompileOptions(threads: 2))
        var feeds = ["target": try Tensor(shape: y.shape, scalars: target)]
        for (i, s) in shapes.enumerated() { feeds["in\(i)"] = try Tensor(shape: s, scalars: inputs[i]) }
        let out = try plan.run(feeds, ids: ids.map { ["ids": try IntTensor(shape: $0.shape, scalars: $0.values)] } ?? [:])
        func lossD(_ xs: [[Double]]) -> Double {
            let yd = reference(xs)
            return zip(yd, target).reduce(0) { $0 + ($1.0 - Double($1.1)) * ($1.0 - Double($1.1)) } / Double(yd.count)
        }
        let base = inputs.map { $0.map(Double.init) }
        XCTAssertEqual(Double(out["loss"]!.scalars[0]), lossD(base), accuracy: 1e-4 * max(1, lossD(base)), "\(what) loss", file: file, line: line)
        for i in shapes.indices {
            var fd = [Float]()
            for j in base[i].indices {
                var p = base, m = base
                let h = 1e-5 * max(1, abs(base[i][j]))
                p[i][j] += h; m[i][j] -= h
                fd.append(Float((lossD(p) - lossD(m)) / (2 * h)))
            }
            assertClose(out["grad\(i)"]!.scalars, fd, relative: 1e-3, "\(what) d/d input \(i)", file: file, line: line)
        }
    }

    // Double-precision forwards.
    static func matmul(_ x: [Double], _ w: [Double], m: Int, n: Int, k: Int) -> [Double] {
        (0..<m * n).map { idx in (0..<k).reduce(0) { $0 + x[idx / n * k + $1] * w[idx % n * k + $1] } }
    }
    static func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
    static func gelu(_ v: Double) -> Double { 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }

    func testMatmul() throws {
        try check("matmul", shapes: [[3, 5], [4, 5]], build: { g, v, _ in try g.matmul(v[0], v[1]) },
                  reference: { Self.matmul($0[0], $0[1], m: 3, n: 4, k: 5) })
        try check("matmul 3-D", shapes: [[2, 3, 5], [4, 5]], build: { g, v, _ in try g.matmul(v[0], v[1]) },
                  reference: { Self.matmul($0[0], $0[1], m: 6, n: 4, k: 5) })
    }

    func testAddMulScaleReshape() throws {
        try check("add", shapes: [[3, 4], [3, 4]], build: { g, v, _ in try g.add(v[0], v[1]) }, reference: { zip($0[0], $0[1]).map(+) })
        try check("add row", shapes: [[2, 3, 4], [4]], build: { g, v, _ in try g.add(v[0], v[1]) },
                  reference: { x in x[0].indices.map { x[0][$0] + x[1][$0 % 4] } })
        try check("mul", shapes: [[3, 4], [3, 4]], build: { g, v, _ in try g.mul(v[0], v[1]) }, reference: { zip($0[0], $0[1]).map(*) })
        try check("scale", shapes: [[3, 4]], build: { g, v, _ in try g.scale(v[0], by: -1.5) }, reference: { $0[0].map { $0 * Double(Float(-1.5)) } })
        try check("reshape", shapes: [[3, 4]], build: { g, v, _ in try g.mul(try g.reshape(v[0], to: [2, 6]), try g.reshape(v[0], to: [2, 6])) },
                  reference: { $0[0].map { $0 * $0 } })
    }

    func testActivations() throws {
        try check("silu", shapes: [[3, 7]], build: { g, v, _ in try g.silu(try g.scale(v[0], by: 3)) }, reference: { $0[0].map { Self.silu(3 * $0) } })
        try check("gelu", shapes: [[3, 7]], build: { g, v, _ in try g.gelu(try g.scale(v[0], by: 3)) }, reference: { $0[0].map { Self.gelu(3 * $0) } })
        try check("relu", shapes: [[3, 7]], build: { g, v, _ in try g.relu(v[0]) }, reference: { $0[0].map { max($0, 0) } })
        // silu(a)·b, fused by the fusion pass into silu_mul (the vjp is the recorded ops').
        try check("silu_mul", shapes: [[3, 7], [3, 7]], build: { g, v, _ in try g.mul(try g.silu(v[0]), v[1]) },
                  reference: { zip($0[0], $0[1]).map { Self.silu($0) * $1 } })
    }

    func testSiluMulOpDirectly() throws {
        try check("silu_mul op", shapes: [[2, 5], [2, 5]], build: { g, v, _ in try g.record(.siluMul, [v[0], v[1]], "") },
                  reference: { zip($0[0], $0[1]).map { Self.silu($0) * $1 } })
    }

    func testSoftmax() throws {
        func reference(_ x: [[Double]]) -> [Double] {
            var out: [Double] = []
            for r in 0..<3 {
                let row: [Double] = (0..<6).map { 2 * x[0][r * 6 + $0] }
                let mx: Double = row.max()!
                let e: [Double] = row.map { exp($0 - mx) }
                let s: Double = e.reduce(0, +)
                out += e.map { $0 / s }
            }
            return out
        }
        try check("softmax", shapes: [[3, 6]], build: { g, v, _ in try g.softmax(try g.scale(v[0], by: 2)) }, reference: reference)
    }

    func testSoftmaxLogSumExp() throws {
        // y = probs·cᵀ + lse: both results of one softmax step carry a gradient.
        func reference(_ v: [[Double]]) -> [Double] {
            var out: [Double] = []
            for r in 0..<3 {
                let row: [Double] = Array(v[0][r * 6..<(r + 1) * 6])
                let mx: Double = row.max()!
                let e: [Double] = row.map { exp($0 - mx) }
                let s: Double = e.reduce(0, +)
                var dot: Double = 0
                for j in 0..<6 { dot += e[j] / s * v[1][j] }
                out.append(dot + log(s) + mx)
            }
            return out
        }
        try check("softmax+lse", shapes: [[3, 6], [1, 6]], build: { g, v, _ in
            let (probs, lse) = try g.softmaxWithLogSumExp(v[0])
            return try g.add(try g.reshape(try g.matmul(probs, v[1]), to: [3]), lse)
        }, reference: reference)
        func lseOnly(_ v: [[Double]]) -> [Double] {
            (0..<3).map { r -> Double in
                let row: [Double] = Array(v[0][r * 6..<(r + 1) * 6])
                let mx: Double = row.max()!
                return log(row.map { exp($0 - mx) }.reduce(0, +)) + mx
            }
        }
        try check("lse only", shapes: [[3, 6]], build: { g, v, _ in try g.softmaxWithLogSumExp(v[0]).logSumExp }, reference: lseOnly)
    }

    func testRMSNorm() throws {
        let eps: Float = 1e-5
        func reference(_ x: [[Double]]) -> [Double] {
            var out: [Double] = []
            for r in 0..<3 {
                let row = Array(x[0][r * 8..<(r + 1) * 8])
                let ss: Double = row.reduce(0) { $0 + $1 * $1 }
                let inv: Double = 1 / (ss / 8 + Double(eps)).squareRoot()
                for j in 0..<8 { out.append(row[j] * inv * x[1][j]) }
            }
            return out
        }
        try check("rms_norm", shapes: [[3, 8], [8]], build: { g, v, _ in try g.rmsNorm(v[0], weight: v[1], eps: eps) }, reference: reference)
    }

    func testEmbeddingTableGradient() throws {
        let ids: [Int32] = [2, 0, 2, 4, 1, 2]
        try check("embedding", shapes: [[5, 3]], ids: ([2, 3], ids), build: { g, v, idv in try g.embedding(idv!, table: v[0]) },
                  reference: { x in ids.flatMap { id in (0..<3).map { x[0][Int(id) * 3 + $0] } } })
    }

    func testCrossEntropy() throws {
        // Four rows, one ignored (-100): the loss is the mean over the other three.
        let labels: [Int32] = [2, -100, 0, 4]
        let g = Graph()
        let logits = g.input("logits", shape: [4, 5]), ids = g.input("labels", shape: [4], element: .int32)
        let loss = try g.crossEntropy(try g.scale(logits, by: 2), labels: ids)
        g.output("loss", loss)
        try g.backward(from: loss, inputGradients: ["dlogits": logits])
        var rng = SeededRandom(seed: 13)
        let x = rng.floats(20)
        let out = try g.compile(CompileOptions(threads: 2)).run(["logits": try Tensor(shape: [4, 5], scalars: x)],
                                                               ids: ["labels": try IntTensor(shape: [4], scalars: labels)])
        func lossD(_ v: [Double]) -> Double {
            var total = 0.0, rows = 0.0
            for (i, l) in labels.enumerated() where l != -100 {
                let row = (0..<5).map { 2 * v[i * 5 + $0] }
                let mx = row.max()!
                total += log(row.map { exp($0 - mx) }.reduce(0, +)) + mx - row[Int(l)]
                rows += 1
            }
            return total / rows
        }
        let xd = x.map(Double.init)
        XCTAssertEqual(Double(out["loss"]!.scalars[0]), lossD(xd), accuracy: 1e-5)
        var fd = [Float]()
        for j in xd.indices {
            var p = xd, m = xd
            p[j] += 1e-6; m[j] -= 1e-6
            fd.append(Float((lossD(p) - lossD(m)) / 2e-6))
        }
        assertClose(out["dlogits"]!.scalars, fd, relative: 1e-3, "cross_entropy d/dlogits")
        // A label outside the classes fails the run.
        XCTAssertThrowsError(try g.compile().run(["logits": try Tensor(shape: [4, 5], scalars: x)],
                                                 ids: ["labels": try IntTensor(shape: [4], scalars: [0, 5, 1, 1])]))
    }

    func testLossTargetGradientAndMSE() throws {
        // Gradient through the target operand of a second loss term: (a − b)² with both inputs.
        try check("mse inner", shapes: [[4], [4]], build: { g, v, _ in
            let inner = try g.mseLoss(v[0], target: v[1])
            return try g.reshape(inner, to: [1])
        }, reference: { x in
            var s: Double = 0
            for i in 0..<4 { let d: Double = x[0][i] - x[1][i]; s += d * d }
            return [s / 4]
        })
    }
}

/// Training steps as one plan: SGD and AdamW learn a low-rank target, the 4-bit weight never
/// changes, AdamW follows torch's formula, and 1 vs 2 threads give identical bits.
final class TrainingStepTests: XCTestCase {
    func packedBytes(_ layer: QuantizedLinear) -> [UInt8] {
        let v = layer.weightStorage.kernelView
        return Array(UnsafeBufferPointer(start: v.packed, count: Int((v.rows * v.cols + 1) / 2)))
    }

    /// A small layer and data whose target is the base output plus a random rank-2 change.
    func problem(seed: UInt64) throws -> (layer: QuantizedLinear, x: Tensor, target: Tensor) {
        let inF = 32, outF = 24, m = 16
        var rng = SeededRandom(seed: seed)
        var config = QLoraConfig()
        config.rank = 4
        config.alpha = 8
        let layer = try QuantizedLinear(weight: try Tensor(shape: [outF, inF], scalars: rng.floats(outF * inF, scale: 0.2)), config: config,
                                        name: "fit", seed: seed)
        let x = try Tensor(shape: [m, inF], scalars: rng.floats(m * inF))
        let base = try layer.forward(x)
        let u = rng.floats(outF * 2, scale: 0.5), v = rng.floats(2 * inF, scale: 0.5)
        var t = base.scalars
        for i in 0..<m { for o in 0..<outF {
            var s: Float = 0
            for j in 0..<2 { for k in 0..<inF { s += u[o * 2 + j] * v[j * inF + k] * x.scalars[i * inF + k] } }
            t[i * outF + o] += s
        } }
        return (layer, x, try Tensor(shape: base.shape, scalars: t))
    }

    func trainingPlan(_ layer: QuantizedLinear, _ optimizer: Optimizer, x: Tensor, threads: Int) throws -> ExecutablePlan {
        let g = Graph()
        let loss = try g.mseLoss(try layer(g.input("x", shape: x.shape)), target: g.input("target", shape: [x.shape[0], layer.outFeatures]))
        g.output("loss", loss)
        try g.backward(from: loss, optimizer: optimizer)
        return try g.compile(CompileOptions(threads: threads))
    }

    func fit(_ method: Optimizer.Method, steps: Int, threads: Int = 2, seed: UInt64 = 3) throws -> (first: Float, last: Float, store: ParameterStore, layer: QuantizedLinear) {
        let (layer, x, target) = try problem(seed: seed)
        let store = try ParameterStore(gathering: layer.trainableParameters)
        let plan = try trainingPlan(layer, try Optimizer(method, parameters: store), x: x, threads: threads)
        let bytes = packedBytes(layer)
        var first: Float = 0, last: Float = 0
        for step in 0..<steps {
            let loss = try plan.run(["x": x, "target": target])["loss"]!.scalars[0]
            if step == 0 { first = loss }
            last = loss
        }
        XCTAssertEqual(packedBytes(layer), bytes, "the 4-bit weight bytes never change")
        return (first, last, store, layer)
    }

    func testSGDLearnsLowRankTarget() throws {
        let r = try fit(.sgd(learningRate: 0.05, momentum: 0.9), steps: 300)
        XCTAssertLessThan(r.last, 0.01 * r.first, "SGD: \(r.first) → \(r.last)")
    }

    func testAdamWLearnsLowRankTarget() throws {
        let r = try fit(.adamW(learningRate: 0.01, weightDecay: 0), steps: 300)
        XCTAssertLessThan(r.last, 0.01 * r.first, "AdamW: \(r.first) → \(r.last)")
    }

    func testOneAndTwoThreadsGiveIdenticalBits() throws {
        for method in [Optimizer.Method.adamW(learningRate: 0.01), .sgd(learningRate: 0.05, momentum: 0.9)] {
            let a = try fit(method, steps: 5, threads: 1), b = try fit(method, steps: 5, threads: 2)
            assertBitIdentical(b.store.flatValues, a.store.flatValues, "\(method) parameters")
            assertBitIdentical(b.store.flatGradients, a.store.flatGradients, "\(method) gradients")
        }
    }

    /// One parameter p, loss mean((p − t)²): gradient 2/n·(p − t).
    func singleParameter(_ method: Optimizer.Method, values: [Float], target: [Float]) throws -> (ExecutablePlan, ParameterStorage, Optimizer) {
        let p = try ParameterStorage(name: "p", tensor: try Tensor(shape: [values.count], scalars: values), trainable: true)
        let store = try ParameterStore(gathering: [p])
        let optimizer = try Optimizer(method, parameters: store)
        let g = Graph()
        let loss = try g.mseLoss(g.parameter(p), target: g.input("t", shape: [target.count]))
        g.output("loss", loss)
        try g.backward(from: loss, optimizer: optimizer)
        return (try g.compile(CompileOptions(threads: 1)), p, optimizer)
    }

    func testSGDWithoutMomentumIsExactlyPMinusLrG() throws {
        var rng = SeededRandom(seed: 11)
        let p0 = rng.floats(10), t = rng.floats(10)
        let (plan, p, _) = try singleParameter(.sgd(learningRate: 0.3), values: p0, target: t)
        _ = try plan.run(["t": try Tensor(shape: [10], scalars: t)])
        let f: Float = 2 / 10
        let expected = zip(p0, t).map { pv, tv -> Float in let g = f * (pv - tv); return pv - Float(0.3) * g }
        assertBitIdentical(p.tensor.scalars, expected, "p -= lr·g")
    }

    func testAdamWMatchesTorchFormula() throws {
        var rng = SeededRandom(seed: 5)
        let p0 = rng.floats(20), t = rng.floats(20)
        let lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1
        let (plan, p, optimizer) = try singleParameter(.adamW(learningRate: lr, beta1: b1, beta2: b2, epsilon: eps,
                                                              weightDecay: wd), values: p0, target: t)
        // torch.optim.AdamW, single-tensor path, in double precision.
        var pd = p0.map(Double.init), m = [Double](repeating: 0, count: 20), v = m
        for step in 1...4 {
            _ = try plan.run(["t": try Tensor(shape: [20], scalars: t)])
            let bc1 = 1 - pow(b1, Double(step)), bc2 = 1 - pow(b2, Double(step))
            for i in 0..<20 {
                let g = 2.0 / 20 * (pd[i] - Double(t[i]))
                pd[i] *= 1 - lr * wd
                m[i] += (1 - b1) * (g - m[i])
                v[i] = b2 * v[i] + (1 - b2) * g * g
                pd[i] -= lr / bc1 * m[i] / (v[i].squareRoot() / bc2.squareRoot() + eps)
            }
            assertClose(p.tensor.scalars, pd.map(Float.init), relative: 1e-5, "AdamW step \(step)")
        }
        XCTAssertEqual(optimizer.stepCount, 4)
    }
}

/// The backward and optimizer kernels on sizes above the one-thread threshold: 1 and 2 threads
/// give the same bits.
final class BackwardThreadingTests: XCTestCase {
    func gradients(threads: Int) throws -> [String: Tensor] {
        var rng = SeededRandom(seed: 21)
        let g = Graph()
        let x = g.input("x", shape: [128, 320]), w = g.input("w", shape: [300, 320]), nw = g.input("nw", shape: [300])
        let table = g.input("table", shape: [50, 300]), ids = g.input("ids", shape: [128], element: .int32)
        let h = try g.add(try g.gelu(try g.matmul(x, w)), try g.embedding(ids, table: table))
        let y = try g.rmsNorm(try g.mul(try g.softmax(h), try g.silu(h)), weight: nw)
        let loss = try g.mseLoss(y, target: g.input("t", shape: [128, 300]))
        g.output("loss", loss)
        try g.backward(from: loss, inputGradients: ["dx": x, "dw": w, "dnw": nw, "dtable": table])
        let plan = try g.compile(CompileOptions(threads: threads))
        let feeds = ["x": try Tensor(shape: [128, 320], scalars: rng.floats(128 * 320)),
                     "w": try Tensor(shape: [300, 320], scalars: rng.floats(300 * 320, scale: 0.1)),
                     "nw": try Tensor(shape: [300], scalars: rng.floats(300)),
                     "table": try Tensor(shape: [50, 300], scalars: rng.floats(50 * 300)),
                     "t": try Tensor(shape: [128, 300], scalars: rng.floats(128 * 300))]
        let idValues = (0..<128).map { Int32(($0 * 7) % 50) }
        return try plan.run(feeds, ids: ["ids": try IntTensor(shape: [128], scalars: idValues)])
    }

    func testBackwardKernelsGiveIdenticalBitsForOneAndTwoThreads() throws {
        let a = try gradients(threads: 1), b = try gradients(threads: 2)
        for name in ["loss", "dx", "dw", "dnw", "dtable"] { assertBitIdentical(b[name]!.scalars, a[name]!.scalars, name) }
    }

    func testOptimizerStepsGiveIdenticalBitsForOneAndTwoThreads() throws {
        for method in [Optimizer.Method.adamW(learningRate: 0.01), .sgd(learningRate: 0.1, momentum: 0.9)] {
            var results: [[Float]] = []
            for threads in [1, 2] {
                var rng = SeededRandom(seed: 4)
                let p = try ParameterStorage(name: "p", tensor: try Tensor(shape: [40000], scalars: rng.floats(40000)), trainable: true)
                let store = try ParameterStore(gathering: [p])
                let g = Graph()
                let loss = try g.mseLoss(try g.silu(g.parameter(p)), target: g.input("t", shape: [40000]))
                g.output("loss", loss)
                try g.backward(from: loss, optimizer: try Optimizer(method, parameters: store))
                let plan = try g.compile(CompileOptions(threads: threads))
                let t = try Tensor(shape: [40000], scalars: rng.floats(40000))
                for _ in 0..<3 { _ = try plan.run(["t": t]) }
                results.append(store.flatValues + store.flatGradients)
            }
            assertBitIdentical(results[1], results[0], "\(method)")
        }
    }
}

/// Two QuantizedLinear layers stacked: the gradient flows through the first layer's output into
/// the second, and every adapter's gradient matches finite differences of a double forward.
final class StackedLayerGradientTests: XCTestCase {
    func testStackedLayersMatchFiniteDifferences() throws {
        var rng = SeededRandom(seed: 9)
        var config = QLoraConfig()
        config.rank = 3
        config.alpha = 6
        let dims = [(12, 10), (10, 8)], m = 5
        var layers: [QuantizedLinear] = []
        for (i, (inF, outF)) in dims.enumerated() {
            let layer = try QuantizedLinear(weight: try Tensor(shape: [outF, inF], scalars: rng.floats(outF * inF, scale: 0.3)),
                                            config: config, name: "l\(i)", seed: UInt64(i + 1))
            try layer.setLoraWeights(a: try Tensor(shape: [3, inF], scalars: rng.floats(3 * inF, scale: 0.3)),
                                     b: try Tensor(shape: [outF, 3], scalars: rng.floats(3 * outF, scale: 0.3)))
            layers.append(layer)
        }
        let x = try Tensor(shape: [m, 12], scalars: rng.floats(m * 12)), t = try Tensor(shape: [m, 8], scalars: rng.floats(m * 8))
        let store = try ParameterStore(gathering: layers.flatMap(\.trainableParameters))
        let g = Graph()
        let xv = g.input("x", shape: x.shape)
        let loss = try g.mseLoss(try layers[1](try layers[0](xv)), target: g.input("t", shape: t.shape))
        g.output("loss", loss)
        try g.backward(from: loss, parameters: store, inputGradients: ["dx": xv])
        let out = try g.compile(CompileOptions(threads: 2)).run(["x": x, "t": t])

        // Double forward over [x, A0, B0, A1, B1] with the layers' dequantized weights.
        let w = layers.map { $0.quantizedWeight.dequantize().scalars.map(Double.init) }
        let s = Double(layers[0].scaling)
        func linear(_ x: [Double], _ rows: Int, _ inF: Int, _ outF: Int, _ w: [Double], _ a: [Double], _ b: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: rows * outF)
            for i in 0..<rows {
                var xa = [Double](repeating: 0, count: 3)
                for j in 0..<3 { for k in 0..<inF { xa[j] += x[i * inF + k] * a[j * inF + k] } }
                for o in 0..<outF {
                    var acc = 0.0
                    for k in 0..<inF { acc += x[i * inF + k] * w[o * inF + k] }
                    var lora = 0.0
                    for j in 0..<3 { lora += xa[j] * b[o * 3 + j] }
                    y[i * outF + o] = acc + s * lora
                }
            }
            return y
        }
        func lossD(_ v: [[Double]]) -> Double {
            let h = linear(v[0], m, 12, 10, w[0], v[1], v[2]), y = linear(h, m, 10, 8, w[1], v[3], v[4])
            var total = 0.0
            for i in y.indices { let d = y[i] - Double(t.scalars[i]); total += d * d }
            return total / Double(y.count)
        }
        let base = [x.scalars] + store.parameters.map { $0.tensor.scalars }
        let values = base.map { $0.map(Double.init) }
        XCTAssertEqual(Double(out["loss"]!.scalars[0]), lossD(values), accuracy: 1e-5 * lossD(values))
        let analytic = [out["dx"]!.scalars] + store.gradients.map { $0.tensor.scalars }
        for i in values.indices {
            var fd = [Float]()
            for j in values[i].indices {
                var p = values, q = values
                p[i][j] += 1e-5; q[i][j] -= 1e-5
                fd.append(Float((lossD(p) - lossD(q)) / 2e-5))
            }
            assertClose(analytic[i], fd, relative: 1e-3, "stacked: gradient \(i) (x, A0, B0, A1, B1)")
        }
    }
}
