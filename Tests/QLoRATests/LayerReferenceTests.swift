import XCTest
@testable import QLoRA

/// QuantizedLinear against the bitsandbytes + PEFT LoRA cases of shared/reference, in every mode,
/// fused and unfused, for 2-D and 3-D inputs.
final class LayerReferenceTests: XCTestCase {
    struct Case {
        let name: String
        let layer: QuantizedLinear
        let files: [String: Any]
    }

    func loadCases() throws -> [Case] {
        let manifest = try Reference.manifest()
        let cases = manifest["lora_cases"] as! [String: [String: Any]]
        let weights = manifest["weights"] as! [String: [String: Any]]
        return try cases.keys.sorted().map { name in
            let c = cases[name]!
            let files = c["files"] as! [String: [String: Any]]
            func load(_ key: String) throws -> Tensor {
                try Reference.tensor(files[key]!["file"] as! String, shape: files[key]!["shape"] as! [Int])
            }
            let wCase = weights[c["weight"] as! String]!
            let wFile = (wCase["files"] as! [String: [String: Any]])["W"]!
            var config = QLoraConfig()
            config.rank = c["r"] as! Int
            config.alpha = Float(c["alpha"] as! Double)
            config.useRSLoRA = c["use_rslora"] as? Bool ?? false
            config.quantType = QuantType(rawValue: c["quant_type"] as! String)!
            config.blockSize = c["blocksize"] as! Int
            config.doubleQuant = c["double_quant"] as! Bool
            let w = try Reference.tensor(wFile["file"] as! String, shape: wFile["shape"] as! [Int])
            let bias = (c["bias"] as! Bool) ? try load("bias") : nil
            let layer = try QuantizedLinear(weight: w, bias: bias, config: config, name: name, seed: 1)
            try layer.setLoraWeights(a: load("A"), b: load("B"))
            // The base weight the layer uses is the reference's, bit for bit (the double-quant offset is
            // torch's float32 mean of the absmax).
            assertBitIdentical(layer.quantizedWeight.dequantize().scalars, try load("W_dequant").scalars, "\(name) W_dequant")
            XCTAssertEqual(layer.scaling, Float(c["scaling"] as! Double))
            return Case(name: name, layer: layer, files: files)
        }
    }

    func tensor(_ c: Case, _ key: String) throws -> Tensor {
        let f = c.files[key] as! [String: Any]
        return try Reference.tensor(f["file"] as! String, shape: f["shape"] as! [Int])
    }

    func testForwardMatchesReferenceInEveryMode() throws {
        let cases = try loadCases()
        XCTAssertEqual(cases.count, 3)
        for c in cases {
            for kind in ["x2d", "x3d"] {
                let x = try tensor(c, "\(kind)_x"), expected = try tensor(c, "\(kind)_y")
                // Eager forward, on-the-fly then cached.
                assertClose(try c.layer.forward(x).scalars, expected.scalars, relative: 1e-5, "\(c.name) \(kind) forward")
                try c.layer.enableWeightCaching()
                assertClose(try c.layer.forward(x).scalars, expected.scalars, relative: 1e-5, "\(c.name) \(kind) forward cached")
                c.layer.disableWeightCaching()
                // Graph API in every mode, fused and unfused.
                for mode in ExecutionMode.allCases {
                    for fusion in [true, false] {
                        let g = Graph()
                        g.output("y", try c.layer(g.input("x", shape: x.shape)))
                        let plan = try g.compile(CompileOptions(mode: mode, threads: 2, fusion: fusion))
                        let y = try plan.run(["x": x])["y"]!
                        XCTAssertEqual(y.shape, expected.shape)
                        assertClose(y.scalars, expected.scalars, relative: 1e-5, "\(c.name) \(kind) \(mode) fusion=\(fusion)")
                    }
                }
            }
        }
    }

    func testBaseOutputWithZeroAdapter() throws {
        for c in try loadCases() {
            let (a, b) = c.layer.loraWeights
            try c.layer.setLoraWeights(a: a, b: Tensor.zeros(shape: b.shape))
            let x = try tensor(c, "x2d_x")
            assertClose(try c.layer.forward(x).scalars, try tensor(c, "x2d_base").scalars, relative: 1e-5, "\(c.name) base")
        }
    }
}
