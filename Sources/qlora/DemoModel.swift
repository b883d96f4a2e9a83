import Foundation
import QLoRA

/// The demo's deterministic Llama-MLP model: sizes, the graph (the same as
/// Graphs/llama-mlp-stack.json), and writers for its f32 checkpoint and a random PEFT adapter.
struct DemoModel {
    var hidden = 1024
    var intermediate = 2816
    var layers = 3
    var rank = 8
    var seed: UInt64 = 42

    static let projections = ["gate_proj", "up_proj", "down_proj"]

    /// [out, in] of each projection.
    func shape(_ projection: String) -> [Int] {
        projection == "down_proj" ? [hidden, intermediate] : [intermediate, hidden]
    }

    var modules: [String] {
        (0..<layers).flatMap { i in DemoModel.projections.map { "model.layers.\(i).mlp.\($0)" } }
    }

    /// Writes model.safetensors in f32, as transformers would save it (weights ~ U(-1/√in, 1/√in)).
    func writeCheckpoint(to url: URL) throws {
        var rng = SplitMix64(seed: seed)
        let writer = try SafeTensorsWriter(url: url, metadata: ["format": "pt"])
        for i in 0..<layers {
            for p in DemoModel.projections {
                let s = shape(p)
                try writer.add("model.layers.\(i).mlp.\(p).weight", floats: rng.uniform(s[0] * s[1], bound: 1 / Float(s[1]).squareRoot()), shape: s)
            }
            try writer.add("model.layers.\(i).post_attention_layernorm.weight", floats: rng.uniform(hidden, bound: 0.1).map { 1 + $0 }, shape: [hidden])
        }
        try writer.add("model.norm.weight", floats: rng.uniform(hidden, bound: 0.1).map { 1 + $0 }, shape: [hidden])
        try writer.commit()
    }

    /// A PEFT adapter with random non-zero A and B on every projection (r = `rank`, alpha = 2r).
    func randomAdapter() throws -> LoraAdapter {
        var rng = SplitMix64(seed: seed &+ 1)
        var weights: [String: (a: Tensor, b: Tensor)] = [:]
        for m in modules {
            let s = shape(String(m.split(separator: ".").last!))
            weights[m] = (try Tensor(shape: [rank, s[1]], scalars: rng.uniform(rank * s[1], bound: 1 / Float(s[1]).squareRoot())),
                          try Tensor(shape: [s[0], rank], scalars: rng.uniform(s[0] * rank, bound: 0.05)))
        }
        let config = LoraAdapterConfig(r: rank, loraAlpha: Double(2 * rank), targetModules: DemoModel.projections,
                                       baseModelNameOrPath: "model_bnb4bit")
        return try LoraAdapter(config: config, weights: weights)
    }

    /// A deterministic input [m, hidden].
    func input(rows m: Int) throws -> Tensor {
        var rng = SplitMix64(seed: seed &+ 2 &+ UInt64(m))
        return try Tensor(shape: [m, hidden], scalars: rng.uniform(m * hidden, bound: 1))
    }

    static let graphJSON = """
        {
          "format": "qlora-graph", "version": 1, "name": "llama-mlp-stack",
          "dims": {"layers": 3},
          "inputs": [{"name": "x", "shape": ["...", "hidden"]}],
          "ops": [
            {"repeat": {"count": "layers", "index": "i", "input": "x", "output": "h", "ops": [
              {"op": "rms_norm", "weight": "model.layers.{i}.post_attention_layernorm.weight", "eps": 1e-6, "inputs": ["$in"], "output": "norm{i}"},
              {"op": "linear", "module": "model.layers.{i}.mlp.gate_proj", "out": "intermediate", "inputs": ["norm{i}"], "output": "gate{i}"},
              {"op": "linear", "module": "model.layers.{i}.mlp.up_proj", "out": "intermediate", "inputs": ["norm{i}"], "output": "up{i}"},
              {"op": "silu", "inputs": ["gate{i}"], "output": "act{i}"},
              {"op": "mul", "inputs": ["act{i}", "up{i}"], "output": "inner{i}"},
              {"op": "linear", "module": "model.layers.{i}.mlp.down_proj", "out": "hidden", "inputs": ["inner{i}"], "output": "mlp{i}"},
              {"op": "add", "inputs": ["$in", "mlp{i}"], "output": "$out"}
            ]}},
            {"op": "rms_norm", "weight": "model.norm.weight", "eps": 1e-6, "inputs": ["h"], "output": "y"}
          ],
          "outputs": [{"name": "y"}]
        }
        """
}
