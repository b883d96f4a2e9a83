import ArgumentParser
import QLoRA

/// The sampling flags `generate` and `chat` share (temperature 0 = greedy).
struct SamplingOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Sampling temperature (0: greedy).")
    var temperature: Float = 0

    @Option(parsing: .unconditional, help: "Sample among the K most likely tokens.")
    var topK: Int?

    @Option(parsing: .unconditional, help: "Sample among the most likely tokens whose probability reaches P.")
    var topP: Float?

    @Option(parsing: .unconditional, help: "Seed of the sampler.")
    var seed: UInt64 = 0

    /// The validated sampler these flags describe.
    func sampler() throws -> TokenSampler {
        let s = TokenSampler(temperature: temperature, topK: topK, topP: topP, seed: seed)
        try s.validate()
        return s
    }
}
