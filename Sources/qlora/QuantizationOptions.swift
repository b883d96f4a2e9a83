import ArgumentParser
import QLoRA

/// How f32/f16/bf16 weights are quantized: shared by `quantize` and the graph commands (which
/// quantize unquantized checkpoints at load; bitsandbytes 4-bit weights are used as stored).
struct QuantizationOptions: ParsableArguments {
    @Option(help: "4-bit data type: nf4 or fp4.")
    var quantType: String = "nf4"

    @Option(parsing: .unconditional, help: "Elements per absmax block (a power of two from 32 to 4096).")
    var blockSize: Int = 64

    @Flag(inversion: .prefixedNo, help: "Quantize the absmax statistics to 8 bits (bitsandbytes compress_statistics).")
    var doubleQuant = true

    /// The library options, validated (the block size is checked by the quantizer).
    func options(threads: Int) throws -> QuantizeOptions {
        guard let type = QuantType(rawValue: quantType) else {
            throw QLoraError.invalidArgument("--quant-type must be nf4 or fp4, got \"\(quantType)\"")
        }
        var q = QuantizeOptions()
        q.quantType = type
        q.blockSize = blockSize
        q.doubleQuant = doubleQuant
        q.threads = threads
        return q
    }
}
