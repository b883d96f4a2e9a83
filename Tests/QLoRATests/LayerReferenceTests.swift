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
        try LoraReferenceCase.names().map { name in
            let c = try LoraReferenceCase(name)
            // The base weight the layer uses is the reference's, bit for bit (the double-quant offset is
            // torch's float32 mean of the absmax).
            assertBitIdentical(c.layer.quantizedWeight.dequantize().scalars, try c.tensor("W_dequant").scalars, "\(name) W_dequant")
            XCTAssertEqual(c.layer.scaling, Float(c.entry["scaling"] as! Double))
            return Case(name: name, layer: c.layer, files: c.files)
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
