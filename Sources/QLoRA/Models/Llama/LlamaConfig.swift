import Foundation

/// The shape and conventions of a Llama-family causal LM, read from a Hugging Face `config.json`
/// or from a GGUF file's `llama.*` metadata. Anything this implementation does not compute the
/// way transformers would (another architecture, activation, RoPE type, tensor parallel split)
/// is an error naming the field.
public struct LlamaConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabSize: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var ropeScaling: RoPEScaling
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]

    public init(hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int, vocabSize: Int,
                rmsNormEps: Float = 1e-6, ropeTheta: Float = 10000, ropeScaling: RoPEScaling = .none, tieWordEmbeddings: Bool = false,
                attentionBias: Bool = false, mlpBias: Bool = false, bosTokenId: Int? = nil, eosTokenIds: [Int] = []) throws {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias
        self.mlpBias = mlpBias
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        try validate(source: "LlamaConfig")
    }

    /// The 7 projections of layer `i` that are 4-bit (as bitsandbytes quantizes them), in
    /// module order (q, k, v, o, gate, up, down).
    public static let projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

    func validate(source: String) throws {
        func bad(_ field: String, _ reason: String) -> QLoraError { .invalidConfig(field: "\(source): \(field)", reason: reason) }
        for (field, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", layers),
                           ("num_attention_heads", heads), ("num_key_value_heads", kvHeads), ("head_dim", headDim), ("vocab_size", vocabSize)]
        where v <= 0 { throw bad(field, "must be positive, got \(v)") }
        guard heads % kvHeads == 0 else { throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(heads)") }
        guard headDim % 2 == 0, headDim <= 256 else { throw bad("head_dim", "must be even and at most 256, got \(headDim)") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad("rms_norm_eps", "must be positive, got \(rmsNormEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw bad("rope_theta", "must be positive, got \(ropeTheta)") }
    }

    /// Reads `config.json` of a transformers Llama checkpoint.
    public static func load(configJSON url: URL) throws -> LlamaConfig {
        let path = url.path
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: url)) } catch {
            throw QLoraError.io(file: path, reason: "cannot read: \(error.localizedDescription)")
        }
        return try parse(JSONValue.parse(bytes, file: path, field: "config.json"), source: path)
    }

    /// A transformers Llama config.json (transformers 4 `rope_theta`/`rope_scaling` or 5 `rope_parameters`).
    public static func parse(_ json: JSONValue, source: String) throws -> LlamaConfig {
        func bad(_ field: String, _ reason: String) -> QLoraError { .invalidConfig(field: "\(source): \(field)", reason: reason) }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            guard let v = json[key], !v.isNull else {
                if let value { return value }
                throw bad(key, "missing")
            }
            guard case let .int(i) = v else { throw bad(key, "expected an integer, got \(v.kind)") }
            return i
        }
        func number(_ v: JSONValue?, _ key: String, default value: Double? = nil) throws -> Double {
            guard let v, !v.isNull else {
                if let value { return value }
                throw bad(key, "missing")
            }
            guard let d = v.doubleValue else { throw bad(key, "expected a number, got \(v.kind)") }
            return d
        }
        func bool(_ key: String, default value: Bool) throws -> Bool {
            guard let v = json[key], !v.isNull else { return value }
            guard case let .bool(b) = v else { throw bad(key, "expected true or false, got \(v.kind)") }
            return b
        }
        if let archs = json["architectures"], case let .array(list) = archs {
            let names = list.compactMap { v -> String? in if case let .string(s) = v { return s } else { return nil } }
            guard names.contains("LlamaForCausalLM") else {
                throw QLoraError.unsupported("\(source): architectures \(names) — only LlamaForCausalLM is supported")
            }
        }
        if let type = json["model_type"], case let .string(t) = type, t != "llama" {
            throw QLoraError.unsupported("\(source): model_type '\(t)' — only 'llama' is supported")
        }
        if let act = json["hidden_act"], case let .string(a) = act, a != "silu" {
            throw QLoraError.unsupported("\(source): hidden_act '\(a)' — Llama's MLP is computed with silu")
        }
        if let tp = json["pretraining_tp"], case let .int(t) = tp, t != 1 {
            throw QLoraError.unsupported("\(source): pretraining_tp \(t) — only 1 (no tensor-parallel split) is supported")
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        // RoPE: transformers 5 puts theta and the type in rope_parameters; 4 has rope_theta + rope_scaling.
        let rope = json["rope_parameters"].flatMap { $0.isNull ? nil : $0 }
        let ropeField = rope != nil ? "rope_parameters" : "rope_scaling"
        let scalingJSON = rope ?? json["rope_scaling"].flatMap { $0.isNull ? nil : $0 }
        let theta = try number(rope?["rope_theta"] ?? json["rope_theta"], rope != nil ? "rope_parameters.rope_theta" : "rope_theta", default: 10000)
        var scaling = RoPEScaling.none
        if let s = scalingJSON {
            guard case .object = s else { throw bad(ropeField, "expected an object or null, got \(s.kind)") }
            let typeValue = s["rope_type"] ?? s["type"]
            var type = "default"
            if let typeValue, case let .string(t) = typeValue { type = t }
            switch type {
            case "default": break
            case "llama3":
                scaling = .llama3(factor: Float(try number(s["factor"], "\(ropeField).factor")),
                                  lowFreqFactor: Float(try number(s["low_freq_factor"], "\(ropeField).low_freq_factor")),
                                  highFreqFactor: Float(try number(s["high_freq_factor"], "\(ropeField).high_freq_factor")),
                                  originalMaxPositions: Int(try number(s["original_max_position_embeddings"], "\(ropeField).original_max_position_embeddings")))
            default:
                throw QLoraError.unsupported("\(source): \(ropeField).rope_type '\(type)' — supported: default, llama3")
            }
        }
        func ids(_ key: String) throws -> [Int] {
            guard let v = json[key], !v.isNull else { return [] }
            switch v {
            case let .int(i): return [i]
            case let .array(list):
                return try list.map { e in guard case let .int(i) = e else { throw bad(key, "expected integers, got \(e.kind)") }; return i }
            default: throw bad(key, "expected an integer or a list of integers, got \(v.kind)")
            }
        }
        let config = try LlamaConfig(
            hiddenSize: hidden, intermediateSize: int("intermediate_size"), layers: int("num_hidden_layers"), heads: heads,
            kvHeads: int("num_key_value_heads", default: heads), headDim: int("head_dim", default: heads > 0 ? hidden / heads : 0),
            vocabSize: int("vocab_size"), rmsNormEps: Float(try number(json["rms_norm_eps"], "rms_norm_eps", default: 1e-6)),
            ropeTheta: Float(theta), ropeScaling: scaling, tieWordEmbeddings: bool("tie_word_embeddings", default: false),
            attentionBias: bool("attention_bias", default: false), mlpBias: bool("mlp_bias", default: false),
            bosTokenId: ids("bos_token_id").first, eosTokenIds: ids("eos_token_id"))
        return config
    }

    /// A GGUF file's `llama.*` metadata. Embeddings are tied when the file has no `output.weight`.
    public static func parse(gguf file: GGUFFile) throws -> LlamaConfig {
        let m = file.metadata
        let arch = try m.string("general.architecture")
        guard arch == "llama" else { throw QLoraError.unsupported("\(file.path): general.architecture '\(arch)' — only 'llama' is supported") }
        let hidden = try m.int("llama.embedding_length"), heads = try m.int("llama.attention.head_count")
        let kvHeads = m["llama.attention.head_count_kv"] != nil ? try m.int("llama.attention.head_count_kv") : heads
        let headDim = m["llama.rope.dimension_count"] != nil ? try m.int("llama.rope.dimension_count") : hidden / max(heads, 1)
        let vocab: Int
        if m["llama.vocab_size"] != nil { vocab = try m.int("llama.vocab_size") }
        else if file.contains("token_embd.weight") { vocab = try file.info("token_embd.weight").rows }
        else { throw QLoraError.malformedFile(file: file.path, field: "metadata 'llama.vocab_size'", reason: "missing, and no token_embd.weight") }
        if m["llama.rope.scaling.type"] != nil {
            let type = try m.string("llama.rope.scaling.type")
            guard type == "none" else { throw QLoraError.unsupported("\(file.path): llama.rope.scaling.type '\(type)' — only none is supported for GGUF") }
        }
        return try LlamaConfig(
            hiddenSize: hidden, intermediateSize: try m.int("llama.feed_forward_length"), layers: try m.int("llama.block_count"),
            heads: heads, kvHeads: kvHeads, headDim: headDim, vocabSize: vocab,
            rmsNormEps: try m.float("llama.attention.layer_norm_rms_epsilon"),
            ropeTheta: m["llama.rope.freq_base"] != nil ? try m.float("llama.rope.freq_base") : 10000,
            tieWordEmbeddings: !file.contains("output.weight"),
            bosTokenId: m["tokenizer.ggml.bos_token_id"] != nil ? try m.int("tokenizer.ggml.bos_token_id") : nil,
            eosTokenIds: m["tokenizer.ggml.eos_token_id"] != nil ? [try m.int("tokenizer.ggml.eos_token_id")] : [])
    }
}
