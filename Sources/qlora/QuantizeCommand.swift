import ArgumentParser
import QLoRA

// Implemented by the quantize/IO work (issue 2).
struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "quantize",
                                                    abstract: "Quantize a safetensors checkpoint to the bitsandbytes 4-bit layout.")
    func run() throws { throw QLoraError.unsupported("qlora quantize is not implemented yet") }
}

struct DequantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dequantize",
                                                    abstract: "Dequantize a bitsandbytes 4-bit checkpoint back to f32.")
    func run() throws { throw QLoraError.unsupported("qlora dequantize is not implemented yet") }
}
