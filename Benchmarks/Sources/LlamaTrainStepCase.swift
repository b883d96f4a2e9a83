import Foundation
import QLoRA

/// The benchmarks' QLoRA training step on a Llama model (`--llama`, `--scale`): fresh LoRA r 16,
/// alpha 32 on all 7 projections, the causal-LM loss of one [1, 256] row on its own ids, AdamW.
enum LlamaTrainStepCase {
    static let seq = 256

    /// `--compute-type f32|bf16` (default f32): bf16 runs the frozen base's matmuls (4-bit linears
    /// forward and dX, lm_head forward and dX) in bf16 on AVX512-BF16 CPUs.
    static func computeType(_ value: String?) throws -> ComputeType {
        switch value {
        case nil, "f32", "float32": return .float32
        case "bf16", "bfloat16": return .bfloat16
        case let v?: throw QLoraError.invalidArgument("--compute-type must be f32 or bf16, got \"\(v)\"")
        }
    }

    static func load(_ url: URL, quantization: QuantizeOptions) throws -> LlamaModel {
        var lora = QLoraConfig()
        lora.rank = 16
        lora.alpha = 32
        return try LlamaModel.load(url, quantization: quantization,
                                   loraTargets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                   freshLora: lora, seed: 1)
    }

    /// The recorded step (forward, loss, backward, AdamW) with input `input_ids` and output `loss`.
    static func graph(_ model: LlamaModel) throws -> Graph {
        let g = Graph()
        let input = g.input("input_ids", shape: [1, seq], element: .int32)
        let loss = try g.causalLMLoss(try model.record(inputIds: input).logits, labels: input, label: "loss")
        g.output("loss", loss)
        let store = try ParameterStore(gathering: model.trainableParameters)
        let optimizer = try Optimizer(.adamW(learningRate: 1e-4), parameters: store)
        try g.backward(from: loss, optimizer: optimizer)
        return g
    }
}
