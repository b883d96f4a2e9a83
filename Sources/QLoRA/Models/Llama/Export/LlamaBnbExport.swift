import Foundation

/// `qlora quantize MODEL -o DIR` for a whole Llama model: a Hugging Face directory or a GGUF file
/// becomes a directory that transformers + bitsandbytes load as is (`from_pretrained(DIR)`):
///
/// - `model.safetensors`: the 7 projections of every layer in bitsandbytes' saved 4-bit layout
///   (`BnbCheckpoint`), quantized exactly as `LlamaCheckpoint` does at load; embeddings, norms,
///   biases and an untied `lm_head` unquantized (as `BitsAndBytesConfig` leaves them) in the dtype
///   transformers would save: the source's dtype for a directory (bytes copied), float32 for a
///   GGUF file (transformers dequantizes GGUF tensors to float32). A tied `lm_head` is not written
///   (transformers drops tied weights on save). Metadata `{"format": "pt"}`.
/// - `config.json`: the source's config (a GGUF file's metadata in transformers' field names) plus
///   `quantization_config` (`BnbModelConfig`).
/// - tokenizer files and `generation_config.json` copied from a source directory; for a GGUF file a
///   `tokenizer.json` + `tokenizer_config.json` converted from its metadata when it has a gpt2
///   (byte-level) or llama (SentencePiece) BPE vocabulary (`GGUFTokenizerJSON`).
///
/// Streaming: one tensor at a time is in memory (the writer spills to disk). Atomic: the directory
/// is staged next to the destination and renamed at the end.
public enum LlamaBnbExport {
    /// Files copied from a source model directory when present.
    public static let companionFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                        "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
                                        "generation_config.json"]

    /// The tensors a Llama model with config `c` consists of, in transformers' module order, and
    /// whether each one is a 4-bit projection.
    public static func tensorNames(_ c: LlamaConfig) -> [(name: String, shape: [Int], quantized: Bool)] {
        let h = c.hiddenSize, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim, f = c.intermediateSize
        var out: [(String, [Int], Bool)] = [("model.embed_tokens.weight", [c.vocabSize, h], false)]
        let shapes: [String: [Int]] = ["self_attn.q_proj": [q, h], "self_attn.k_proj": [kv, h], "self_attn.v_proj": [kv, h],
                                       "self_attn.o_proj": [h, q], "mlp.gate_proj": [f, h], "mlp.up_proj": [f, h], "mlp.down_proj": [h, f]]
        for i in 0..<c.layers {
            let p = "model.layers.\(i)."
            out.append((p + "input_layernorm.weight", [h], false))
            for m in LlamaConfig.projections {
                out.append((p + m + ".weight", shapes[m]!, true))
                if m.hasPrefix("self_attn") ? c.attentionBias : c.mlpBias { out.append((p + m + ".bias", [shapes[m]![0]], false)) }
                if m == "self_attn.o_proj" { out.append((p + "post_attention_layernorm.weight", [h], false)) }
            }
        }
        out.append(("model.norm.weight", [h], false))
        if !c.tieWordEmbeddings { out.append(("lm_head.weight", [c.vocabSize, h], false)) }
        return out
    }

    /// Writes the 4-bit directory for `model` at `output`. `options` sets the 4-bit format (a
    /// source already in bitsandbytes 4-bit keeps its weights as stored).
    @discardableResult
    public static func export(model: URL, output: URL, options: QuantizeOptions, computeDType: String = "float32",
                              replace: Bool = false, progress: ConversionProgress? = nil) throws -> ConversionSummary {
        let checkpoint = try LlamaCheckpoint(url: model, quantization: options)
        let isGGUF = !FileManager.default.isDirectory(model)
        // The config first: a bad compute dtype or foreign quantization fails before any work.
        let configText: String
        var gguf: GGUFFile?
        if isGGUF {
            let file = try GGUFFile(url: model)
            gguf = file
            let md = file.metadata
            let context = md["llama.context_length"] != nil ? try md.int("llama.context_length") : 2048
            let pad = md["tokenizer.ggml.padding_token_id"] != nil ? try md.int("tokenizer.ggml.padding_token_id") : nil
            configText = try BnbModelConfig.json(model: BnbModelConfig.llamaFields(checkpoint.config, maxPositions: context, padTokenId: pad),
                                                 options: options, computeDType: computeDType, source: model.path)
        } else {
            let url = model.appendingPathComponent("config.json")
            let bytes: [UInt8]
            do { bytes = [UInt8](try Data(contentsOf: url)) } catch {
                throw QLoraError.io(file: url.path, reason: "cannot read: \(error.localizedDescription)")
            }
            configText = try BnbModelConfig.json(model: JSONValue.parse(bytes, file: url.path, field: "config.json"),
                                                 options: options, computeDType: computeDType, source: url.path)
        }
        // The tokenizer files too: a vocabulary that cannot be converted fails before any tensor work.
        var tokenizerFiles: (json: String, config: String)?
        if let md = gguf?.metadata, let json = try GGUFTokenizerJSON.json(md), let config = try GGUFTokenizerJSON.config(md) {
            tokenizerFiles = (json, config)
        }
        let staged = try StagedDirectory(destination: output, replace: replace)
        try staged.write("config.json", Data(configText.utf8))

        let writer = try SafeTensorsWriter(url: staged.file("model.safetensors"), metadata: ["format": "pt"])
        var summary = ConversionSummary()
        let tensors = tensorNames(checkpoint.config)
        let neededBy = "the Llama model's config"
        for (i, t) in tensors.enumerated() {
            let actual = try checkpoint.shape(t.name, neededBy: neededBy)
            guard actual == t.shape else {
                throw QLoraError.malformedFile(file: model.path, field: t.name, reason: "shape \(actual) disagrees with the config, which needs \(t.shape)")
            }
            if t.quantized {
                let before = writer.dataBytes
                let weight = try checkpoint.quantizedWeight(t.name, neededBy: neededBy)
                try writer.addQuantized(t.name, weight, dtype: checkpoint.sourceDType(t.name))
                summary.tensorsConverted += 1
                summary.convertedParameters += weight.count
                summary.convertedBytesBefore += weight.count * 4
                summary.convertedBytesAfter += writer.dataBytes - before
            } else if let stored = try checkpoint.storedPlainTensor(t.name) {
                try writer.add(t.name, dtype: stored.dtype, shape: stored.shape, data: stored.data)
                summary.tensorsCopied += 1
            } else {
                try writer.add(t.name, tensor: checkpoint.tensor(t.name, neededBy: neededBy))
                summary.tensorsCopied += 1
            }
            progress?(i + 1, tensors.count, t.name)
        }
        summary.fileBytesAfter = try writer.commit()

        if let gguf {
            summary.fileBytesBefore = gguf.fileSize
            if let files = tokenizerFiles {
                try staged.write("tokenizer.json", Data(files.json.utf8))
                try staged.write("tokenizer_config.json", Data(files.config.utf8))
            }
        } else {
            for name in companionFiles where FileManager.default.fileExists(atPath: model.appendingPathComponent(name).path) {
                try staged.copy(model.appendingPathComponent(name))
            }
            for name in (try? FileManager.default.contentsOfDirectory(atPath: model.path)) ?? [] where name.hasSuffix(".safetensors") {
                summary.fileBytesBefore += (try? CheckpointConversion.fileSize(model.appendingPathComponent(name))) ?? 0
            }
        }
        try staged.commit()
        return summary
    }
}

extension FileManager {
    func isDirectory(_ url: URL) -> Bool {
        var d: ObjCBool = false
        return fileExists(atPath: url.path, isDirectory: &d) && d.boolValue
    }
}
