/// llama.cpp's pre-tokenizers for a GGUF's `tokenizer.ggml.pre` (src/llama-vocab.cpp of the
/// llama.cpp that llama-cpp-python 0.3.36 vendors: the name → LLAMA_VOCAB_PRE_TYPE_* table in
/// llama_vocab::impl::load and each type's `regex_exprs` in llm_tokenizer_bpe), written with
/// Hugging Face pieces. llama.cpp applies its regexes one after the other, each cutting every
/// piece at its matches and keeping both (a Split with behavior Isolated), then byte-encodes.
/// Checked against llama.cpp's own test vectors (models/ggml-vocab-*.gguf.inp/.out) by
/// LlamaCppVocabTests.
extension PreTokenizer {
    /// The byte-level groups of llama.cpp's table that are implemented, by `tokenizer.ggml.pre`.
    enum LlamaCppGroup: Sendable {
        case gpt2, digitsThenGPT2, llama3, qwen2, falcon, `default`, deepseekCoder
    }

    static let llamaCppGroups: [String: LlamaCppGroup] = {
        var t: [String: LlamaCppGroup] = [:]
        // "gpt2" is not a name llama.cpp knows; kept for GGUFs this package wrote before.
        for n in ["gpt2", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                  "mellum", "modern-bert", "mpt", "olmo", "jais", "trillion", "granite-docling", "exaone4"] { t[n] = .gpt2 }
        for n in ["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"] { t[n] = .digitsThenGPT2 }
        for n in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
                  "dbrx", "smaug-bpe"] { t[n] = .llama3 }
        for n in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "stablelm2", "hunyuan", "solar-open"] { t[n] = .qwen2 }
        t["falcon"] = .falcon
        t["default"] = .default
        t["deepseek-coder"] = .deepseekCoder
        return t
    }()

    /// The names `llamaCpp(pre:)` accepts, sorted (for error messages and docs).
    public static var llamaCppNames: [String] { llamaCppGroups.keys.sorted() }

    /// llama.cpp's pre-tokenizer for `tokenizer.ggml.pre`; an unknown or unimplemented name is a
    /// QLoraError naming it.
    public static func llamaCpp(pre: String) throws -> PreTokenizer {
        guard let group = llamaCppGroups[pre] else {
            throw QLoraError.unsupported("llama.cpp pre-tokenizer '\(pre)' (implemented: \(llamaCppNames.joined(separator: ", ")))")
        }
        func isolate(_ p: SplitPattern) -> PreTokenizer { .split(pattern: p, behavior: .isolated, invert: false) }
        let gpt2 = PreTokenizer.byteLevel(addPrefixSpace: false, useRegex: true)
        let bytes = PreTokenizer.byteLevel(addPrefixSpace: false, useRegex: false)
        switch group {
        case .gpt2:
            return gpt2
        case .digitsThenGPT2:  // "\p{N}", then GPT-2's regex
            return .sequence([isolate(.numberCharacter), gpt2])
        case .llama3:
            return .sequence([isolate(.llama3(maxDigits: 3)), bytes])
        case .qwen2:
            return .sequence([isolate(.llama3(maxDigits: 1)), bytes])
        case .falcon:  // "[\p{P}\$\+<=>\^~\|`]+", GPT-2's regex, "[0-9][0-9][0-9]"
            return .sequence([isolate(.punctuationRun(extra: Array("$+<=>^~|`".utf8))), gpt2, isolate(.asciiDigitTriple)])
        case .default:  // "[\p{P}\$\+<=>\^~\|]+", GPT-2's regex, "\p{N}+", "[0-9][0-9][0-9]"
            return .sequence([isolate(.punctuationRun(extra: Array("$+<=>^~|".utf8))), gpt2, isolate(.numberRun),
                              isolate(.asciiDigitTriple)])
        case .deepseekCoder:  // "[\r\n]", "\s?\p{L}+", "\s?\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\p{N}"
            return .sequence([isolate(.newlineCharacter), isolate(.spaceThenLetters), isolate(.spaceThenPunctuation),
                              isolate(.scalarRangeRun(SplitPattern.deepseekCJK)), isolate(.numberCharacter), bytes])
        }
    }

    /// Whether llama.cpp sets `ignore_merges` for this name (a piece that is a whole token is
    /// taken as it is): the llama3 names other than dbrx and smaug-bpe.
    public static func llamaCppIgnoresMerges(pre: String) -> Bool {
        llamaCppGroups[pre] == .llama3 && pre != "dbrx" && pre != "smaug-bpe"
    }
}
