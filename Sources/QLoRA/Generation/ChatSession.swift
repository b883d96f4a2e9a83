import Foundation

/// A conversation with a chat model: the history of user and assistant messages (and an optional
/// system message), re-rendered in full by the chat template for every reply, as transformers'
/// `apply_chat_template(..., add_generation_prompt=True)` would. The `TextGenerator` reuses the
/// KV cache for the tokens the new rendering shares with the previous one, so a turn costs its
/// new tokens. When a rendering would not leave room for the answer in the context, the oldest
/// exchanges are dropped (the system message stays) and the caller is told.
public final class ChatSession: @unchecked Sendable {
    public let generator: TextGenerator
    public let template: ChatTemplate
    /// Rendered first when set; without it the template's default (if any) applies.
    public let system: String?
    /// Sampling for every reply (its random state carries over from reply to reply).
    public var sampler: TokenSampler
    /// The user and assistant messages so far (without the system message).
    public private(set) var history: [ChatMessage] = []

    public init(generator: TextGenerator, template: ChatTemplate, system: String? = nil, sampler: TokenSampler = .greedy) throws {
        try sampler.validate()
        self.generator = generator
        self.template = template
        self.system = system
        self.sampler = sampler
    }

    /// A session over `model` with the tokenizer's chat template (or `template`); it stops at the
    /// model's eos ids, the tokenizer's eos and the template's end-of-turn token.
    public convenience init(model: LlamaModel, tokenizer: BPETokenizer, template: ChatTemplate? = nil, system: String? = nil,
                            capacity: Int, sampler: TokenSampler = .greedy, options: CompileOptions = CompileOptions()) throws {
        let t = try template ?? tokenizer.parsedChatTemplate()
        let generator = try TextGenerator(model: model, tokenizer: tokenizer, capacity: capacity,
                                          stopTokenIds: tokenizer.stopTokenIds(modelEOS: model.config.eosTokenIds, template: t), options: options)
        try self.init(generator: generator, template: t, system: system, sampler: sampler)
    }

    public struct Reply: Sendable {
        /// The answer (also appended to the history).
        public var text: String
        public var output: TextGenerator.Output
        /// The rendered prompt's token ids.
        public var promptIds: [Int32]
        /// Messages dropped from the start of the history to make room.
        public var droppedMessages: Int
        /// The answer's token budget after making room (≤ the requested maxNewTokens).
        public var maxNewTokens: Int
    }

    /// The messages the template renders: the system message, then `turns`.
    public func messages(_ turns: [ChatMessage]) -> [ChatMessage] {
        (system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + turns
    }

    /// The token ids of `turns` rendered with the generation prompt (no special tokens added:
    /// the template writes them).
    public func promptIds(_ turns: [ChatMessage]) throws -> [Int32] {
        let text = try template.render(messages(turns), addGenerationPrompt: true, specialTokens: generator.tokenizer.specialTokenVariables)
        return generator.tokenizer.encode(text).map { Int32($0) }
    }

    /// Answers `message`, streaming the text to `onText`; `onNotice` hears about dropped history.
    /// The message and the answer join the history only when the answer completes. A message too
    /// long for the context even alone is a QLoraError (the history is unchanged).
    public func reply(to message: String, maxNewTokens: Int, onNotice: (String) -> Void = { _ in },
                      onText: (String) throws -> Void = { _ in }) throws -> Reply {
        guard maxNewTokens >= 1 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 1 for a chat reply, got \(maxNewTokens)") }
        let capacity = generator.capacity
        var turns = history + [ChatMessage(role: "user", content: message)]
        var ids = try promptIds(turns)
        var dropped = 0
        while ids.count + maxNewTokens > capacity && turns.count > 1 {
            // Drop the oldest exchange: messages up to and including the first assistant message.
            let cut = (turns.firstIndex(where: { $0.role == "assistant" }).map { $0 + 1 } ?? 1)
            let n = min(cut, turns.count - 1)
            turns.removeFirst(n)
            dropped += n
            ids = try promptIds(turns)
        }
        guard ids.count < capacity else {
            throw QLoraError.invalidArgument("the message takes \(ids.count) tokens with the chat template, the context holds \(capacity): write a shorter message (or give a larger --context)")
        }
        let budget = min(maxNewTokens, capacity - ids.count)
        if dropped > 0 {
            onNotice("the conversation is longer than the context (\(capacity) tokens): dropped the oldest \(dropped) message\(dropped == 1 ? "" : "s")")
        }
        if budget < maxNewTokens { onNotice("the answer is limited to \(budget) tokens by the context (\(capacity) tokens)") }
        let out = try generator.generate(promptIds: ids, maxNewTokens: budget, sampler: &sampler, onText: onText)
        history = turns + [ChatMessage(role: "assistant", content: out.text)]
        return Reply(text: out.text, output: out, promptIds: ids, droppedMessages: dropped, maxNewTokens: budget)
    }

    /// Forgets the history (the system message stays); the cache is kept, its prefix still serves.
    public func reset() { history = [] }
}
