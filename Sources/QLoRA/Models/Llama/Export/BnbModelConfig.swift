import Foundation

/// The `config.json` of a 4-bit model directory as transformers writes it after loading with
/// `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=..., bnb_4bit_use_double_quant=...,
/// bnb_4bit_compute_dtype=...)` and `save_pretrained`: the model's fields plus
/// `quantization_config`, keys sorted, two-space indent, a final newline
/// (`PretrainedConfig.to_json_string`). bitsandbytes reads the block size from each weight's quant
/// state, so the config does not carry it.
public enum BnbModelConfig {
    /// Compute dtypes bitsandbytes accepts for `bnb_4bit_compute_dtype`.
    public static let computeDTypes = ["float32", "float16", "bfloat16"]

    /// transformers' `BitsAndBytesConfig.to_dict()` for a 4-bit config (transformers 5.24).
    public static func quantizationConfig(_ options: QuantizeOptions, computeDType: String) -> JSONValue {
        .object([
            ("_load_in_4bit", .bool(true)), ("_load_in_8bit", .bool(false)),
            ("bnb_4bit_compute_dtype", .string(computeDType)), ("bnb_4bit_quant_storage", .string("uint8")),
            ("bnb_4bit_quant_type", .string(options.quantType.rawValue)), ("bnb_4bit_use_double_quant", .bool(options.doubleQuant)),
            ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
            ("llm_int8_skip_modules", .null), ("llm_int8_threshold", .number(6.0, text: "6.0")),
            ("load_in_4bit", .bool(true)), ("load_in_8bit", .bool(false)), ("quant_method", .string("bitsandbytes")),
        ])
    }

    /// `model` (a config.json object) with `quantization_config` set, serialized as transformers does.
    /// A model that already carries a non-bitsandbytes quantization is an error.
    public static func json(model: JSONValue, options: QuantizeOptions, computeDType: String, source: String) throws -> String {
        guard BnbModelConfig.computeDTypes.contains(computeDType) else {
            throw QLoraError.invalidArgument("compute dtype must be one of \(computeDTypes.joined(separator: ", ")), got \"\(computeDType)\"")
        }
        guard case var .object(members) = model else {
            throw QLoraError.malformedFile(file: source, field: "config.json", reason: "expected a JSON object, got \(model.kind)")
        }
        if let q = model["quantization_config"], !q.isNull {
            guard case let .string(method)? = q["quant_method"], method == "bitsandbytes" else {
                throw QLoraError.unsupported("\(source): quantization_config.quant_method is \(q["quant_method"].map { "\($0)" } ?? "missing") — only an unquantized or bitsandbytes 4-bit model can be written as bitsandbytes 4-bit")
            }
        }
        members.removeAll { $0.key == "quantization_config" }
        members.append(("quantization_config", quantizationConfig(options, computeDType: computeDType)))
        return JSONValue.object(members).sortedKeys().pythonDumps(indent: 2) + "\n"
    }

    /// The transformers Llama config.json fields of `c` (for a GGUF file, which has none): what
    /// `AutoConfig.from_pretrained(dir, gguf_file=...)` builds, in transformers 5 names.
    public static func llamaFields(_ c: LlamaConfig, maxPositions: Int, padTokenId: Int?) -> JSONValue {
        func float(_ f: Float) -> JSONValue { .number(Double(f), text: "") }
        func ids(_ list: [Int]) -> JSONValue { list.isEmpty ? .null : list.count == 1 ? .int(list[0]) : .array(list.map { .int($0) }) }
        var rope: [(key: String, value: JSONValue)] = [("rope_theta", float(c.ropeTheta))]
        switch c.ropeScaling {
        case .none: rope.append(("rope_type", .string("default")))
        case let .llama3(factor, low, high, original):
            rope += [("factor", float(factor)), ("high_freq_factor", float(high)), ("low_freq_factor", float(low)),
                     ("original_max_position_embeddings", .int(original)), ("rope_type", .string("llama3"))]
        }
        return .object([
            ("architectures", .array([.string("LlamaForCausalLM")])), ("attention_bias", .bool(c.attentionBias)),
            ("attention_dropout", .number(0, text: "0.0")), ("bos_token_id", c.bosTokenId.map { .int($0) } ?? .null),
            ("dtype", .string("float32")), ("eos_token_id", ids(c.eosTokenIds)), ("head_dim", .int(c.headDim)),
            ("hidden_act", .string("silu")), ("hidden_size", .int(c.hiddenSize)), ("initializer_range", .number(0.02, text: "0.02")),
            ("intermediate_size", .int(c.intermediateSize)), ("max_position_embeddings", .int(maxPositions)),
            ("mlp_bias", .bool(c.mlpBias)), ("model_type", .string("llama")), ("num_attention_heads", .int(c.heads)),
            ("num_hidden_layers", .int(c.layers)), ("num_key_value_heads", .int(c.kvHeads)),
            ("pad_token_id", padTokenId.map { .int($0) } ?? .null), ("pretraining_tp", .int(1)),
            ("rms_norm_eps", float(c.rmsNormEps)), ("rope_parameters", .object(rope)),
            ("tie_word_embeddings", .bool(c.tieWordEmbeddings)), ("use_cache", .bool(true)), ("vocab_size", .int(c.vocabSize)),
        ])
    }
}

extension JSONValue {
    /// The value with every object's keys sorted (Python's `sort_keys=True`, by code point).
    public func sortedKeys() -> JSONValue {
        switch self {
        case let .object(members):
            return .object(members.map { ($0.key, $0.value.sortedKeys()) }
                .sorted { Array($0.key.unicodeScalars.map(\.value)).lexicographicallyPrecedes($1.key.unicodeScalars.map(\.value)) })
        case let .array(items): return .array(items.map { $0.sortedKeys() })
        default: return self
        }
    }
}
