/// PEFT's LoRA initialisation: A ~ kaiming_uniform(a = √5) = U(-1/√fan_in, 1/√fan_in); B = 0.
/// A small SplitMix64 generator, seeded for reproducibility or from the system otherwise.
struct LoraInitializer {
    private var state: UInt64

    init(seed: UInt64?) {
        state = seed ?? UInt64.random(in: .min ... .max)
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [-1/√fanIn, 1/√fanIn): gain √(2/(1+5)) · √(3/fanIn) = 1/√fanIn.
    mutating func kaimingUniform(rows: Int, fanIn: Int) -> Tensor {
        let bound = 1 / Float(fanIn).squareRoot()
        let values = (0..<(rows * fanIn)).map { _ in (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * bound }
        return Tensor(uncheckedShape: [rows, fanIn], scalars: values)
    }
}
