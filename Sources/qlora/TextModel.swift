import Foundation
import QLoRA

/// What `generate --prompt` and `chat` load: the model (quantized at load when it is not 4-bit
/// already), its adapter, and the tokenizer that comes with it (a GGUF file's tokenizer.ggml.*
/// metadata, or the tokenizer.json + tokenizer_config.json of a Hugging Face directory).
func loadTextModel(_ path: String, adapter: String?, quantization: QuantizeOptions) throws -> (model: LlamaModel, tokenizer: BPETokenizer) {
    let tokenizer = try BPETokenizer.load(path: path)
    let weights = try adapter.map { try LoraAdapter(directory: URL(fileURLWithPath: $0)) }
    let model = try LlamaModel.load(URL(fileURLWithPath: path), adapter: weights, quantization: quantization)
    return (model, tokenizer)
}

/// Writes `text` to stdout now (print buffers when stdout is a pipe; streamed text must not wait).
func writeNow(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

func writeToStderr(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}
