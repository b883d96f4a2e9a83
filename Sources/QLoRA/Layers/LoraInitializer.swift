import Foundation

/// How a fresh adapter's A starts (B always starts at zero, so a fresh layer equals its base).
public enum LoraInitialization: String, Sendable, CaseIterable {
    /// PEFT's default (`init_lora_weights=True`): kaiming_uniform_(a = √5) = U(-1/√in, 1/√in).
    case kaimingUniform = "kaiming-uniform"
    /// PEFT's `init_lora_weights="gaussian"`: normal_(std = 1/r).
    case gaussian
}

/// PEFT's LoRA initialisation: A ~ kaiming_uniform(a = √5) = U(-1/√fan_in, 1/√fan_in), or
/// A ~ N(0, (1/r)²); B = 0. Seeded for reproducibility, or from the system generator otherwise.
struct LoraInitializer {
    private var rng: SplitMix64

    init(seed: UInt64?) {
        rng = SplitMix64(seed: seed ?? UInt64.random(in: .min ... .max))
    }

    /// Uniform in [-1/√fanIn, 1/√fanIn): gain √(2/(1+5)) · √(3/fanIn) = 1/√fanIn.
    mutating func kaimingUniform(rows: Int, fanIn: Int) -> Tensor {
        Tensor(uncheckedShape: [rows, fanIn], scalars: rng.uniform(rows * fanIn, bound: 1 / Float(fanIn).squareRoot()))
    }

    /// Normal with mean 0 and `std` (Box–Muller over pairs of 53-bit uniforms, in double).
    mutating func gaussian(rows: Int, columns: Int, std: Float) -> Tensor {
        let n = rows * columns
        var values: [Float] = []
        values.reserveCapacity(n + 1)
        while values.count < n {
            let u1 = (Double(rng.next() >> 11) + 1) / 9_007_199_254_740_992   // (0, 1]
            let u2 = Double(rng.next() >> 11) / 9_007_199_254_740_992        // [0, 1)
            let r = (-2 * Foundation.log(u1)).squareRoot()
            values.append(Float(r * Foundation.cos(2 * Double.pi * u2)) * std)
            values.append(Float(r * Foundation.sin(2 * Double.pi * u2)) * std)
        }
        return Tensor(uncheckedShape: [rows, columns], scalars: Array(values.prefix(n)))
    }
}
