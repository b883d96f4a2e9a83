/// llama.cpp's Llama tensor names ↔ Hugging Face transformers' names (as transformers'
/// get_gguf_hf_weights_map): `blk.N.attn_q.weight` ↔ `model.layers.N.self_attn.q_proj.weight`.
/// HF shape = GGUF ne reversed ([ne1, ne0]). attn_q / attn_k rows are permuted in GGUF
/// (`LlamaQKPermutation`); `output.weight` is absent when the embeddings are tied.
public enum LlamaGGUFNames {
    /// GGUF name → HF name for the per-model tensors.
    static let global: [(gguf: String, hf: String)] = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
    ]

    /// GGUF suffix after `blk.N.` → HF suffix after `model.layers.N.`.
    static let perBlock: [(gguf: String, hf: String)] = [
        ("attn_norm.weight", "input_layernorm.weight"),
        ("attn_q.weight", "self_attn.q_proj.weight"),
        ("attn_k.weight", "self_attn.k_proj.weight"),
        ("attn_v.weight", "self_attn.v_proj.weight"),
        ("attn_output.weight", "self_attn.o_proj.weight"),
        ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("ffn_gate.weight", "mlp.gate_proj.weight"),
        ("ffn_up.weight", "mlp.up_proj.weight"),
        ("ffn_down.weight", "mlp.down_proj.weight"),
    ]

    /// Which Q/K permutation a GGUF tensor carries.
    public enum Permutation: Equatable, Sendable {
        /// Stored as is.
        case none
        /// attn_q: un-permute with llama.attention.head_count heads.
        case query
        /// attn_k: un-permute with llama.attention.head_count_kv heads (head_count when absent).
        case key
    }

    /// The HF name of a GGUF Llama tensor, or nil when the name is not a Llama weight.
    public static func hfName(forGGUF name: String) -> String? {
        if let g = global.first(where: { $0.gguf == name }) { return g.hf }
        guard let (block, suffix) = splitBlock(name, prefix: "blk.") else { return nil }
        return perBlock.first { $0.gguf == suffix }.map { "model.layers.\(block).\($0.hf)" }
    }

    /// The GGUF name of an HF Llama tensor, or nil.
    public static func ggufName(forHF name: String) -> String? {
        if let g = global.first(where: { $0.hf == name }) { return g.gguf }
        guard let (block, suffix) = splitBlock(name, prefix: "model.layers.") else { return nil }
        return perBlock.first { $0.hf == suffix }.map { "blk.\(block).\($0.gguf)" }
    }

    /// The permutation the GGUF tensor `name` carries.
    public static func permutation(ofGGUF name: String) -> Permutation {
        guard let (_, suffix) = splitBlock(name, prefix: "blk.") else { return .none }
        switch suffix {
        case "attn_q.weight": return .query
        case "attn_k.weight": return .key
        default: return .none
        }
    }

    /// The head count to un-permute `name` with, from the file's llama.* metadata (nil when the
    /// tensor is not permuted).
    public static func unpermuteHeads(ofGGUF name: String, metadata: GGUFMetadata) throws -> Int? {
        switch permutation(ofGGUF: name) {
        case .none: return nil
        case .query: return try metadata.int("llama.attention.head_count")
        case .key:
            if metadata["llama.attention.head_count_kv"] != nil { return try metadata.int("llama.attention.head_count_kv") }
            return try metadata.int("llama.attention.head_count")
        }
    }

    /// "blk.12.attn_q.weight" with prefix "blk." → (12, "attn_q.weight").
    static func splitBlock(_ name: String, prefix: String) -> (Int, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let rest = name.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0,
              String(n) == rest[..<dot] else { return nil }
        return (n, String(rest[rest.index(after: dot)...]))
    }
}
