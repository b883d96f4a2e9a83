import Foundation

/// The 4-bit data type of a quantized weight (bitsandbytes' `bnb_4bit_quant_type`).
public enum QuantType: String, Codable, Sendable, CaseIterable {
    case nf4
    case fp4
}

/// The arithmetic type used inside the matmul kernels.
public enum ComputeType: String, Codable, Sendable, CaseIterable {
    case float32
    case bfloat16
}

/// Configuration of a QLoRA layer: LoRA hyper-parameters and how the base weight is quantized.
/// Mirrors qlora-rs' `QLoraConfig`; defaults follow the QLoRA paper and PEFT.
public struct QLoraConfig: Codable, Sendable, Equatable {
    /// LoRA rank r (> 0).
    public var rank: Int = 8
    /// LoRA alpha (>= 0); the adapter is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).
    public var alpha: Float = 16
    /// Dropout probability on the LoRA input during training, in [0, 1): a `QuantizedLinear` made
    /// with it gets its own `LoraDropout` context (eval mode until a `Trainer` runs it; share one
    /// context between layers by setting `dropout` instead).
    public var dropout: Float = 0
    /// Rank-stabilised LoRA scaling (alpha / sqrt(r)).
    public var useRSLoRA: Bool = false
    /// NF4 (default) or FP4.
    public var quantType: QuantType = .nf4
    /// Elements per absmax block: a power of two from 32 to 4096.
    public var blockSize: Int = 64
    /// Quantize the absmax statistics again to 8 bits (bitsandbytes `compress_statistics`).
    public var doubleQuant: Bool = true
    /// Arithmetic type of the matmul kernels.
    public var computeType: ComputeType = .float32
    /// Keep a dequantized f32 copy of the weight (faster large-batch inference, 8× the memory).
    public var cacheDequantized: Bool = false
    /// Module names an adapter targets (Llama's attention and MLP projections). Validated but not
    /// used yet: layers and graph files choose their adapters explicitly. The Llama model builder
    /// will read it to decide which projections get LoRA.
    public var targetModules: [String] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

    public init() {}

    /// The factor applied to the LoRA branch.
    public var scaling: Float {
        useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
    }

    /// Throws `QLoraError.invalidConfig` naming the first field out of range.
    public func validate() throws {
        guard rank > 0 else { throw QLoraError.invalidConfig(field: "rank", reason: "must be > 0, got \(rank)") }
        guard alpha >= 0, alpha.isFinite else {
            throw QLoraError.invalidConfig(field: "alpha", reason: "must be a finite value >= 0, got \(alpha)")
        }
        guard dropout >= 0, dropout < 1 else {
            throw QLoraError.invalidConfig(field: "dropout", reason: "must be in [0, 1), got \(dropout)")
        }
        try QLoraConfig.validateBlockSize(blockSize)
    }

    /// Block sizes bitsandbytes supports: powers of two from 32 to 4096.
    public static func validateBlockSize(_ blockSize: Int) throws {
        guard blockSize >= 32, blockSize <= 4096, blockSize & (blockSize - 1) == 0 else {
            throw QLoraError.invalidConfig(field: "blockSize",
                                           reason: "must be a power of two from 32 to 4096, got \(blockSize)")
        }
    }
}
