/// One message of a conversation.
public struct ChatMessage: Equatable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// A Jinja chat template (tokenizer_config.json `chat_template` or GGUF `tokenizer.chat_template`),
/// parsed once and rendered as transformers' `apply_chat_template(tokenize=False)` does:
/// jinja2 with trim_blocks and lstrip_blocks, the variables `messages`, `add_generation_prompt`,
/// `tools` and `documents` (none), and the tokenizer's special tokens (`bos_token`, `eos_token`, ...).
public struct ChatTemplate: @unchecked Sendable {
    public let source: String
    let nodes: [JinjaNode]

    /// Parses `source`; a construct outside the supported subset is a QLoraError naming it and
    /// its line:column.
    public init(_ source: String) throws {
        self.source = source
        nodes = try JinjaParser.parse(source)
    }

    /// Renders `messages`. `specialTokens` become variables (e.g. "bos_token": "<s>");
    /// `extra` adds or replaces variables (values as JSON).
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool,
                       specialTokens: [String: String] = [:], extra: [String: JSONValue] = [:]) throws -> String {
        try render(messagesJSON: .array(messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) }),
                   addGenerationPrompt: addGenerationPrompt, specialTokens: specialTokens, extra: extra)
    }

    /// Renders messages given as JSON (messages may carry more fields than role and content).
    public func render(messagesJSON: JSONValue, addGenerationPrompt: Bool,
                       specialTokens: [String: String] = [:], extra: [String: JSONValue] = [:]) throws -> String {
        var globals: [String: JinjaValue] = ["tools": .none, "documents": .none]
        for (k, v) in specialTokens { globals[k] = .string(v) }
        for (k, v) in extra { globals[k] = JinjaValue(json: v) }
        globals["messages"] = JinjaValue(json: messagesJSON)
        globals["add_generation_prompt"] = .bool(addGenerationPrompt)
        var interpreter = JinjaInterpreter(globals: globals)
        _ = try interpreter.render(nodes)
        return interpreter.output
    }
}
