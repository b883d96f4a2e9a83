import Foundation

/// A SentencePiece ("llama") vocabulary in GGUF metadata (Llama-2, Mistral, TinyLlama as written
/// by llama.cpp's converter: tokens, scores, token types, no merges) built as transformers builds
/// it when it loads such a file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`:
/// LlamaTokenizer over the vocabulary, merges from `generate_merges`):
/// - BPE with byte fallback and fuse_unk, no unknown token in the model;
/// - merges derived from the tokens and their scores (`derivedMerges`), or the file's own
///   `tokenizer.ggml.merges` when it has them;
/// - the pre-tokenizer Metaspace("▁", prepend_scheme "first", split false) (for a "phi3" file the
///   normalizer Prepend("▁") + Replace(" ", "▁") instead, as transformers' phi3 builder) and the decoder
///   Replace("▁", " ") + ByteFallback + Fuse + Strip(" ", 1, 0) (MetaspaceRule / SentencePieceDecoder);
/// - special tokens: CONTROL (3) tokens and the bos / eos / unknown / padding tokens; USER_DEFINED
///   (4) tokens are added tokens that are not special;
/// - BOS added unless `tokenizer.ggml.add_bos_token` is false; EOS if `add_eos_token`.
/// transformers ignores `tokenizer.ggml.add_space_prefix` (always "first"), and so does this.
/// Where llama.cpp differs (text after a special token, leading spaces) see docs/tokenizer.md.
extension BPETokenizer {
    /// GGUF `tokenizer.ggml.pre` values for which transformers replaces the pre-tokenizer by a
    /// byte-level regex split (GGUF_PRE_TOKENIZER_SPLITS): not a SentencePiece vocabulary's.
    static let byteLevelPreTokenizerNames: Set<String> = [
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
        "dbrx", "smaug-bpe", "tekken", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "qwen35",
        "gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2",
    ]

    init(llamaVocabulary md: GGUFMetadata) throws {
        let file = md.path
        let architecture = md["general.architecture"]?.stringValue
        if let arch = architecture, ["gemma", "gemma2", "gemma3"].contains(arch) {
            throw QLoraError.unsupported("\(file): metadata 'general.architecture': a '\(arch)' SentencePiece vocabulary (transformers builds it differently from Llama's; not implemented)")
        }
        if md["tokenizer.ggml.pre"] != nil {
            let pre = try md.string("tokenizer.ggml.pre")
            if BPETokenizer.byteLevelPreTokenizerNames.contains(pre) {
                throw QLoraError.unsupported("\(file): metadata 'tokenizer.ggml.pre': '\(pre)' with a 'llama' vocabulary (a byte-level split over SentencePiece pieces is not implemented)")
            }
        }
        let tokens = try BPETokenizer.ggufTokens(md)
        let types = try BPETokenizer.ggufTokenTypes(md, count: tokens.count)
        let scores = try BPETokenizer.ggufScores(md, count: tokens.count)

        // transformers' vocab {token: index}: the last of duplicate tokens wins.
        var idsByToken: [String: Int] = [:]
        idsByToken.reserveCapacity(tokens.count)
        for (id, t) in tokens.enumerated() { idsByToken[t] = id }

        func tokenId(_ key: String) throws -> Int? { try BPETokenizer.ggufTokenId(md, key, vocabulary: tokens.count) }
        func flag(_ key: String, _ fallback: Bool) throws -> Bool { try BPETokenizer.ggufFlag(md, key, default: fallback) }
        let bos = try tokenId("tokenizer.ggml.bos_token_id")
        let eos = try tokenId("tokenizer.ggml.eos_token_id")
        let unk = try tokenId("tokenizer.ggml.unknown_token_id")
        let pad = try tokenId("tokenizer.ggml.padding_token_id")

        // Special: CONTROL tokens, and the tokens named bos / eos / unk / pad (transformers adds
        // those as special tokens too, e.g. Llama's "<unk>", which is UNKNOWN, not CONTROL).
        var isSpecial = types.map { $0 == GGUFTokenType.control.rawValue }
        for id in [bos, eos, unk, pad].compactMap({ $0 }) { isSpecial[id] = true }
        var added: [AddedToken] = []
        for (id, t) in tokens.enumerated() where !t.isEmpty && idsByToken[t] == id {
            let userDefined = types[id] == GGUFTokenType.userDefined.rawValue
            guard isSpecial[id] || userDefined else { continue }
            added.append(AddedToken(id: id, content: t, singleWord: false, lstrip: false, rstrip: false,
                                    normalized: false, special: isSpecial[id]))
        }

        var merges: [(String, String)]
        var mergesField = "metadata 'tokenizer.ggml.scores' (merges derived from the tokens and scores)"
        if md["tokenizer.ggml.merges"] != nil {
            merges = try BPETokenizer.ggufMerges(md)
            mergesField = "metadata 'tokenizer.ggml.merges'"
        } else {
            merges = BPETokenizer.derivedMerges(tokens: tokens, scores: scores, idsByToken: idsByToken)
        }

        let addBos = try flag("tokenizer.ggml.add_bos_token", true)
        let addEos = try flag("tokenizer.ggml.add_eos_token", false)
        var template: String? = nil
        if md["tokenizer.chat_template"] != nil { template = try md.string("tokenizer.chat_template") }
        try self.init(parts: BPETokenizerParts(
            file: file, tokenStrings: tokens.map { Optional($0) }, idsByToken: idsByToken, addedTokens: added,
            merges: merges, mergesField: mergesField, ignoreMerges: false, fuseUnknown: true,
            unknownId: nil, preTokenizer: .sequence([]), bosTokenId: bos, eosTokenId: eos, padTokenId: pad,
            prefixIds: addBos ? bos.map { [$0] } ?? [] : [], suffixIds: addEos ? eos.map { [$0] } ?? [] : [],
            chatTemplate: template,
            sentencePiece: SentencePieceParts(metaspace: BPETokenizer.llamaVocabularyMetaspace(architecture: architecture),
                                              decoderStripsLeadingSpaces: 1)))
    }

    /// How transformers puts "▁" in front: Metaspace(prepend_scheme "first") for Llama's
    /// LlamaTokenizer, but for a "phi3" file the normalizer Prepend("▁") + Replace(" ", "▁") and
    /// no pre-tokenizer (its phi3_tokenizer builder), so "▁" goes before every segment between
    /// added tokens, whatever it starts with — which is also what llama.cpp does.
    static func llamaVocabularyMetaspace(architecture: String?) -> MetaspaceRule {
        architecture == "phi3" ? MetaspaceRule(prepend: .everySegment, split: false) : MetaspaceRule(prepend: .first, split: false)
    }

    /// `tokenizer.ggml.scores`: one finite float per token.
    static func ggufScores(_ md: GGUFMetadata, count: Int) throws -> [Float] {
        let key = "tokenizer.ggml.scores"
        func bad(_ reason: String) -> QLoraError { .malformedFile(file: md.path, field: "metadata '\(key)'", reason: reason) }
        guard let v = md[key] else { throw bad("missing (a 'llama' vocabulary needs a score per token to derive its merges)") }
        guard case .array(let a) = v, a.count == count else {
            throw bad("expected a FLOAT32 array of \(count) elements (one per token), got \(v.typeName)\(BPETokenizer.elementCount(v))")
        }
        var scores = [Float](repeating: 0, count: count)
        for i in 0..<count {
            guard let f = a[i].floatValue, f.isFinite else { throw bad("element \(i): \(a[i]) is not a finite float") }
            scores[i] = f
        }
        return scores
    }

    /// The merges transformers' `generate_merges(vocab, scores)` derives from a vocabulary without
    /// merges: for each distinct token (in the order of first appearance, with the score of its
    /// last), every split into two tokens of the vocabulary, ordered by the halves' ids; then all
    /// sorted best first by (score, left length, right length), lengths in code points, a stable
    /// sort (ties keep that order).
    static func derivedMerges(tokens: [String], scores: [Float], idsByToken: [String: Int]) -> [(String, String)] {
        struct Candidate { var left: String, right: String, leftId: Int, rightId: Int, score: Float, leftLength: Int, rightLength: Int }
        var scoreOf: [String: Float] = [:]
        scoreOf.reserveCapacity(tokens.count)
        var order: [String] = []
        order.reserveCapacity(tokens.count)
        for (t, s) in zip(tokens, scores) {
            if scoreOf.updateValue(s, forKey: t) == nil { order.append(t) }
        }
        var all: [Candidate] = []
        var local: [Candidate] = []
        for token in order {
            let scalars = Array(token.unicodeScalars)
            if scalars.count < 2 { continue }
            let score = scoreOf[token]!
            local.removeAll(keepingCapacity: true)
            for k in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<k]); r.append(contentsOf: scalars[k...])
                let left = String(l), right = String(r)
                guard let a = idsByToken[left], let b = idsByToken[right] else { continue }
                local.append(Candidate(left: left, right: right, leftId: a, rightId: b, score: score, leftLength: k, rightLength: scalars.count - k))
            }
            local.sort { ($0.leftId, $0.rightId) < ($1.leftId, $1.rightId) }
            all.append(contentsOf: local)
        }
        // Python's sorted(reverse=True) is stable: sort the positions, ties by position.
        let score = all.map(\.score), leftLength = all.map(\.leftLength), rightLength = all.map(\.rightLength)
        let positions = (0..<all.count).sorted { i, j in
            if score[i] != score[j] { return score[i] > score[j] }
            if leftLength[i] != leftLength[j] { return leftLength[i] > leftLength[j] }
            if rightLength[i] != rightLength[j] { return rightLength[i] > rightLength[j] }
            return i < j
        }
        return positions.map { (all[$0].left, all[$0].right) }
    }
}
