import Foundation
import XCTest
@testable import QLoRA

final class AdapterTests: XCTestCase {
    let targets = ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"]

    func testReadsPEFTAdapter() throws {
        let adapter = try LoraAdapter(directory: Reference.url("interop/adapter"))
        XCTAssertEqual(adapter.modules.keys.sorted(), targets)
        XCTAssertEqual(adapter.config.r, 8)
        XCTAssertEqual(adapter.config.loraAlpha, 16)
        XCTAssertEqual(adapter.config.baseModelNameOrPath, "model_bnb4bit")
        for module in targets {
            let w = adapter.modules[module]!
            XCTAssertEqual(w.scaling, 2.0)
            XCTAssertEqual(w.rank, 8)
            assertBitIdentical(w.a.scalars, try Reference.floats("interop/expected/\(module).lora_A.f32"), "\(module) A")
            assertBitIdentical(w.b.scalars, try Reference.floats("interop/expected/\(module).lora_B.f32"), "\(module) B")
        }
        XCTAssertEqual(adapter.modules["model.layers.0.mlp.up_proj"]!.a.shape, [8, 64])
        XCTAssertEqual(adapter.modules["model.layers.0.mlp.up_proj"]!.b.shape, [128, 8])
        XCTAssertEqual(adapter.modules["model.layers.0.mlp.down_proj"]!.a.shape, [8, 128])
    }

    /// Writing back the adapter PEFT wrote reproduces both files byte for byte.
    func testWritingPEFTAdapterReproducesItsFiles() throws {
        let dir = try makeTempDirectory(self).appendingPathComponent("adapter")
        try LoraAdapter(directory: Reference.url("interop/adapter")).write(to: dir)
        for name in ["adapter_model.safetensors", "adapter_config.json"] {
            XCTAssert(try Data(contentsOf: dir.appendingPathComponent(name)) == Reference.data("interop/adapter/\(name)"), name)
        }
    }

    /// A new adapter built in code: written with PEFT's full config, read back equal.
    func testWriteReadRoundTripWithRSLoRAAndRankPattern() throws {
        var rng = SeededRandom(seed: 3)
        var config = LoraAdapterConfig(r: 4, loraAlpha: 8, useRSLoRA: true, targetModules: ["q_proj", "v_proj"])
        config.rankPattern = ["v_proj": 2]
        config.alphaPattern = ["layers.1.self_attn.q_proj": 3.5]
        let shapes = ["model.layers.0.self_attn.q_proj": (4, 16, 16), "model.layers.0.self_attn.v_proj": (2, 16, 8),
                      "model.layers.1.self_attn.q_proj": (4, 16, 16)]
        var weights: [String: (a: Tensor, b: Tensor)] = [:]
        for (m, (r, i, o)) in shapes {
            weights[m] = (try Tensor(shape: [r, i], scalars: rng.floats(r * i)), try Tensor(shape: [o, r], scalars: rng.floats(o * r)))
        }
        let adapter = try LoraAdapter(config: config, weights: weights)
        XCTAssertEqual(adapter.modules["model.layers.0.self_attn.q_proj"]!.scaling, Float(8 / 2.0))
        XCTAssertEqual(adapter.modules["model.layers.0.self_attn.v_proj"]!.scaling, Float(8 / 2.0.squareRoot()))
        XCTAssertEqual(adapter.modules["model.layers.1.self_attn.q_proj"]!.scaling, Float(3.5 / 2.0))
        let dir = try makeTempDirectory(self).appendingPathComponent("a")
        try adapter.write(to: dir)
        let back = try LoraAdapter(directory: dir)
        XCTAssertEqual(back.config, config)
        XCTAssertEqual(back.modules, adapter.modules)
        let json = try Reference.manifest("interop/adapter/adapter_config.json")
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(Set(written.keys), Set(json.keys), "same fields as PEFT 0.21.2 writes")
        XCTAssertEqual(written["peft_type"] as? String, "LORA")
        XCTAssertEqual(written["use_rslora"] as? Bool, true)
    }

    /// The reference adapter directory with edited config fields / tensors.
    func edited(config edit: (inout [String: Any]) -> Void = { _ in },
                tensors editTensors: (inout [String: Tensor]) -> Void = { _ in }) throws -> URL {
        let dir = try makeTempDirectory(self)
        var config = try Reference.manifest("interop/adapter/adapter_config.json")
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("adapter_config.json"))
        let file = try SafeTensorsFile(url: Reference.url("interop/adapter/adapter_model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for n in file.names { tensors[n] = try file.tensor(n) }
        editTensors(&tensors)
        let writer = try SafeTensorsWriter(url: dir.appendingPathComponent("adapter_model.safetensors"))
        for (n, t) in tensors { try writer.add(n, tensor: t) }
        try writer.commit()
        return dir
    }

    let upA = "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"
    let upB = "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"

    func testDoRAIsUnsupported() throws {
        let dir = try edited(config: { $0["use_dora"] = true })
        XCTAssertThrowsError(try LoraAdapter(directory: dir)) {
            guard case let QLoraError.unsupported(what) = $0 else { return XCTFail("\($0)") }
            XCTAssert(what.contains("use_dora"))
        }
    }

    func testRankDisagreeingWithConfigIsRejected() throws {
        let dir = try edited(config: { $0["r"] = 4 })
        assertMalformed(try LoraAdapter(directory: dir), field: "model.layers.0.mlp.down_proj", reason: "differs from r = 4")
        // …unless rank_pattern says so for every module.
        let ok = try edited(config: { $0["r"] = 4; $0["rank_pattern"] = ["mlp\\..*_proj": 8] })
        XCTAssertEqual(try LoraAdapter(directory: ok).modules.count, 3)
    }

    func testAAndBRanksMustAgree() throws {
        let dir = try edited(tensors: { $0[self.upB] = try! Tensor(shape: [64, 16], scalars: [Float](repeating: 0, count: 1024)) })
        assertMalformed(try LoraAdapter(directory: dir), field: "model.layers.0.mlp.up_proj", reason: "disagree on the rank")
    }

    func testMissingLoraBIsRejected() throws {
        let dir = try edited(tensors: { $0[self.upB] = nil })
        assertMalformed(try LoraAdapter(directory: dir), field: "model.layers.0.mlp.up_proj", reason: "no lora_B")
    }

    func testModuleOutsideTargetModulesIsRejected() throws {
        let dir = try edited(config: { $0["target_modules"] = ["gate_proj", "down_proj"] })
        assertMalformed(try LoraAdapter(directory: dir), field: "model.layers.0.mlp.up_proj", reason: "target_modules")
    }

    func testMissingConfigIsAnIOError() throws {
        let dir = try makeTempDirectory(self)
        XCTAssertThrowsError(try LoraAdapter(directory: dir)) { guard case QLoraError.io = $0 else { return XCTFail("\($0)") } }
    }
}
