import Foundation
import XCTest
@testable import QLoRA

/// `qlora merge` / `AdapterMerge` on the interop checkpoint (bitsandbytes 0.50.2 4-bit Llama
/// layer) and PEFT adapter from shared/reference: the merged f32 weight reproduces the unmerged
/// layer (frozen 4-bit weight + adapter) within 1e-5 relative; nf4 re-quantizes exactly as our
/// bitsandbytes-identical quantizer does; bf16 rounds; mismatches are user errors.
final class MergeTests: XCTestCase {
    static let bnb = Reference.url("interop/model_bnb4bit/model.safetensors").path
    static let adapter = Reference.url("interop/adapter").path
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-merge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    func testMergedF32EqualsTheUnmergedLayer() throws {
        let out = path("merged.safetensors")
        let r = try CLIRunner.run(["merge", "--weights", Self.bnb, "--adapter", Self.adapter, "-o", out, "--format", "f32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("merged 3 LoRA modules"), r.stdout)
        let merged = try SafeTensorsFile(url: URL(fileURLWithPath: out))
        let checkpoint = try BnbCheckpoint(url: URL(fileURLWithPath: Self.bnb))
        let lora = try LoraAdapter(directory: URL(fileURLWithPath: Self.adapter))
        XCTAssertEqual(lora.modules.count, 3)
        var rng = SeededRandom(seed: 31)
        for (module, weights) in lora.modules.sorted(by: { $0.key < $1.key }) {
            let w4 = try checkpoint.quantized("\(module).weight")
            let layer = try QuantizedLinear(quantizedWeight: w4, config: GraphDefinition.config(for: weights), name: module)
            try layer.setLoraWeights(a: weights.a, b: weights.b)
            let inF = w4.shape[1], out = w4.shape[0], m = 5
            let x = try Tensor(shape: [m, inF], scalars: rng.floats(m * inF))
            let expected = try layer.forward(x).scalars
            let w = try merged.tensor("\(module).weight")
            XCTAssertEqual(w.shape, [out, inF])
            var got = [Float](repeating: 0, count: m * out)
            for i in 0..<m { for o in 0..<out { got[i * out + o] = Float((0..<inF).reduce(0.0) { $0 + Double(x.scalars[i * inF + $1]) * Double(w.scalars[o * inF + $1]) }) } }
            let scale = expected.map(abs).max()!
            let worst = zip(got, expected).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, "\(module): merged vs unmerged outputs")
            // And the adapter really changed the weight.
            XCTAssertGreaterThan(zip(w.scalars, w4.dequantize(threads: 1).scalars).map { abs($0 - $1) }.max()!, 1e-4)
        }
        // Every other weight is dequant(W4); plain tensors are copied.
        XCTAssertEqual(try merged.tensor("model.layers.0.self_attn.q_proj.weight").scalars,
                       try checkpoint.quantized("model.layers.0.self_attn.q_proj.weight").dequantize(threads: 1).scalars)
        XCTAssertEqual(try merged.tensor("model.norm.weight").scalars, try checkpoint.file.tensor("model.norm.weight").scalars)
    }

    func testNF4RequantizesTheMergedWeightAndBF16Rounds() throws {
        let f32 = path("merged.safetensors"), nf4 = path("merged-nf4.safetensors"), bf16 = path("merged-bf16.safetensors")
        for (out, format) in [(f32, "f32"), (nf4, "nf4"), (bf16, "bf16")] {
            let r = try CLIRunner.run(["merge", "--weights", Self.bnb, "--adapter", Self.adapter, "-o", out, "--format", format])
            XCTAssertEqual(r.status, 0, r.stderr)
            if format == "nf4" {
                XCTAssert(r.stdout.contains("re-quantization error model.layers.0.mlp.down_proj: max"), r.stdout)
            }
        }
        let merged = try SafeTensorsFile(url: URL(fileURLWithPath: f32))
        let requantized = try BnbCheckpoint(url: URL(fileURLWithPath: nf4))
        let original = try BnbCheckpoint(url: URL(fileURLWithPath: Self.bnb))
        let name = "model.layers.0.mlp.up_proj.weight"
        let w = try merged.tensor(name)
        let q = try requantized.quantized(name)
        XCTAssertEqual(q.quantType, .nf4)
        XCTAssertEqual(q.packed, try QuantizedTensor.quantize(w, quantType: .nf4, blockSize: q.blockSize, doubleQuant: q.isDoubleQuantized, name: name).packed)
        // Untouched 4-bit weights are copied byte for byte.
        let untouched = "model.layers.0.self_attn.q_proj.weight"
        XCTAssertEqual(try requantized.quantized(untouched).packed, try original.quantized(untouched).packed)
        // The re-quantization error the merge reports is the output difference on random inputs.
        let err = AdapterMerge.outputError("up_proj", w, q.dequantize(threads: 1))
        XCTAssertGreaterThan(err.maxAbs, 0)
        XCTAssertLessThan(err.rms, 0.1 * err.maxOutput)
        // bf16: round to nearest even of the f32 merge.
        let b = try SafeTensorsFile(url: URL(fileURLWithPath: bf16))
        XCTAssertEqual(try b.info(name).dtype, .bf16)
        let bf = try b.tensor(name).scalars
        for (i, v) in w.scalars.enumerated() {
            XCTAssertEqual(bf[i], floatFromBFloat16Bits(AdapterMerge.bfloat16Bits(v)))
            XCTAssertLessThanOrEqual(abs(bf[i] - v), abs(v) / 256)
        }
        XCTAssertEqual(AdapterMerge.bfloat16Bits(1.00390625), 0x3F80)   // a tie rounds to even
        XCTAssertEqual(AdapterMerge.bfloat16Bits(1.01171875), 0x3F82)
    }

    func testAdapterModuleMissingFromTheWeightsIsAUserError() throws {
        let w = try SafeTensorsWriter(url: tmp.appendingPathComponent("w.safetensors"))
        try w.add("proj.weight", tensor: Tensor.zeros(shape: [8, 64]))
        try w.commit()
        let out = path("never.safetensors")
        try CLIRunner.assertUserError(["merge", "--weights", path("w.safetensors"), "--adapter", Self.adapter, "-o", out],
                                      ["model.layers.0.mlp.down_proj", "w.safetensors"])
        try CLIRunner.assertUserError(["merge", "--weights", Self.bnb, "--adapter", path("nowhere"), "-o", out], ["nowhere"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
