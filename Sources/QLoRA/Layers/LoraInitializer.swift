/// PEFT's LoRA initialisation: A ~ kaiming_uniform(a = √5) = U(-1/√fan_in, 1/√fan_in); B = 0.
/// Seeded for reproducibility, or from the system generator otherwise.
struct LoraInitializer {
    private var rng: SplitMix64

    init(seed: UInt64?) {
        rng = SplitMix64(seed: seed ?? UInt64.random(in: .min ... .max))
    }

    /// Uniform in [-1/√fanIn, 1/√fanIn): gain √(2/(1+5)) · √(3/fanIn) = 1/√fanIn.
    mutating func kaimingUniform(rows: Int, fanIn: Int) -> Tensor {
        Tensor(uncheckedShape: [rows, fanIn], scalars: rng.uniform(rows * fanIn, bound: 1 / Float(fanIn).squareRoot()))
    }
}
