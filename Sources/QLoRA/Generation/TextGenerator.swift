import Foundation

/// Text generation over a `LlamaGenerator`: token ids in, text streamed out as it is generated
/// (a `StreamingDecoder` holds back incomplete UTF-8), stopping at a stop token. The KV cache
/// survives between calls: a prompt that starts with the tokens already in the cache (the next
/// turn of a chat re-rendered by its template) only runs its new tokens; a prompt that diverges
/// keeps the common prefix and recomputes from there (positions < k depend only on tokens < k).
public final class TextGenerator: @unchecked Sendable {
    public let model: LlamaModel
    public let tokenizer: BPETokenizer
    public let generator: LlamaGenerator
    /// Generation ends after one of these (it is in `ids`, not in `text`).
    public var stopTokenIds: Set<Int>
    /// The tokens whose keys and values are in the cache, in position order.
    public private(set) var cachedIds: [Int32] = []
    /// The most positions a prompt and its answer can hold.
    public var capacity: Int { generator.cache.capacity }

    public struct Output: Sendable {
        /// The decoded answer, without the stop token.
        public var text: String
        /// The new tokens (with the stop token when it ended the answer).
        public var ids: [Int32]
        public var stoppedAtStopToken: Bool
        public var promptTokens: Int
        /// Prompt tokens whose cache entries were reused instead of recomputed.
        public var reusedTokens: Int
        public var prefillTokensPerSecond: Double
        public var decodeTokensPerSecond: Double
    }

    public init(model: LlamaModel, tokenizer: BPETokenizer, capacity: Int, stopTokenIds: Set<Int>,
                options: CompileOptions = CompileOptions()) throws {
        guard capacity >= 1 else { throw QLoraError.invalidArgument("the context must hold at least 1 token, got \(capacity)") }
        self.model = model
        self.tokenizer = tokenizer
        self.stopTokenIds = stopTokenIds
        generator = try LlamaGenerator(model: model, capacity: capacity, options: options)
    }

    /// Forgets the cache (the next prompt is computed in full).
    public func resetCache() {
        generator.cache.reset()
        cachedIds = []
    }

    /// Generates up to `maxNewTokens` tokens after `promptIds`, calling `onText` with each piece
    /// of text as soon as it is complete. Needs promptIds.count + maxNewTokens − 1 ≤ capacity.
    public func generate(promptIds: [Int32], maxNewTokens: Int, sampler: inout TokenSampler,
                         onText: (String) throws -> Void = { _ in }) throws -> Output {
        try sampler.validate()
        let n = promptIds.count, vocab = model.config.vocabSize
        guard n > 0 else { throw QLoraError.invalidArgument("the prompt needs at least one token") }
        guard maxNewTokens >= 0 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 0, got \(maxNewTokens)") }
        if let bad = promptIds.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw QLoraError.invalidArgument("prompt token \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        guard n + max(maxNewTokens - 1, 0) <= capacity else {
            throw QLoraError.invalidArgument("the prompt (\(n) tokens) and \(maxNewTokens) new tokens do not fit the context of \(capacity) tokens")
        }
        // Keep the cached prefix the prompt shares (at least one prompt token must run, for its logits).
        var k = 0
        while k < min(cachedIds.count, n - 1) && cachedIds[k] == promptIds[k] { k += 1 }
        generator.cache.length = k
        cachedIds.removeLast(cachedIds.count - k)
        try generator.compile(seq: n - k)
        if maxNewTokens > 1 { try generator.compile(seq: 1) }

        var decoder = tokenizer.makeStreamingDecoder()
        var ids: [Int32] = [], text = "", stopped = false
        func emit(_ piece: String) throws {
            guard !piece.isEmpty else { return }
            text += piece
            try onText(piece)
        }
        let t0 = Date()
        var logits = try generator.feed(Array(promptIds[k...]))
        cachedIds.append(contentsOf: promptIds[k...])
        let prefill = Date().timeIntervalSince(t0)
        let t1 = Date()
        while ids.count < maxNewTokens {
            if let bad = logits.firstIndex(where: { $0.isNaN }) {
                throw QLoraError.invalidArgument("the model's logits hold NaN (token \(bad), after \(cachedIds.count) positions): nothing to sample from")
            }
            let next = Int32(sampler.next(logits[...]))
            ids.append(next)
            if stopTokenIds.contains(Int(next)) { stopped = true; break }
            try emit(try decoder.push(Int(next)))
            if ids.count == maxNewTokens { break }
            logits = try generator.feed([next])
            cachedIds.append(next)
        }
        try emit(decoder.finish())
        let decode = Date().timeIntervalSince(t1)
        let decoded = max(ids.count - 1, 0)
        return Output(text: text, ids: ids, stoppedAtStopToken: stopped, promptTokens: n, reusedTokens: k,
                      prefillTokensPerSecond: Double(n - k) / max(prefill, 1e-9),
                      decodeTokensPerSecond: decoded > 0 ? Double(decoded) / max(decode, 1e-9) : 0)
    }
}
