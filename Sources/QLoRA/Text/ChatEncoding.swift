/// A conversation rendered by its chat template and tokenized, with training labels.
public struct EncodedChat: Equatable, Sendable {
    /// The rendered template.
    public var text: String
    public var ids: [Int]
    /// ids[p] where token p is trained, -100 elsewhere.
    public var labels: [Int]
    /// Each token's span in `text`, in Unicode code points.
    public var offsets: [Range<Int>]
    /// Each assistant message's trained span in `text` (content + the end-of-turn token).
    public var assistantSpans: [Range<Int>]
}

extension BPETokenizer {
    /// The variables a template sees for the special tokens (bos_token, eos_token, pad_token).
    public var specialTokenVariables: [String: String] {
        var v: [String: String] = [:]
        if let id = bosTokenId, let t = token(of: id) { v["bos_token"] = t }
        if let id = eosTokenId, let t = token(of: id) { v["eos_token"] = t }
        if let id = padTokenId, let t = token(of: id) { v["pad_token"] = t }
        return v
    }

    /// The tokenizer's chat template, parsed (an error if it has none).
    public func parsedChatTemplate() throws -> ChatTemplate {
        guard let source = chatTemplate else {
            throw QLoraError.invalidArgument("the tokenizer has no chat template (tokenizer_config.json 'chat_template' or GGUF 'tokenizer.chat_template')")
        }
        return try ChatTemplate(source)
    }

    /// Renders `messages` with `template` (default: the tokenizer's), tokenizes the text (special
    /// tokens in it matched, none added) and labels it by the rule of TRL / mlx-lm assistant-only
    /// training: token p is trained iff its character span overlaps an assistant span [s, e),
    /// where s = the length of the render of the messages before it with the generation prompt
    /// (where its content starts) and e = s + its content + the end-of-turn (EOS) token when the
    /// template puts it right after (spaces between included). With `maskPrompt: false` every token is trained.
    public func encodeChat(_ messages: [ChatMessage], template: ChatTemplate? = nil, addGenerationPrompt: Bool = false,
                           maskPrompt: Bool = true) throws -> EncodedChat {
        let t = try template ?? parsedChatTemplate()
        let vars = specialTokenVariables
        let text = try t.render(messages, addGenerationPrompt: addGenerationPrompt, specialTokens: vars)
        let (ids, offsets) = encodeWithOffsets(text)
        let scalars = Array(text.unicodeScalars)
        var spans: [Range<Int>] = []
        for (i, m) in messages.enumerated() where m.role == "assistant" {
            let before = try t.render(Array(messages[..<i]), addGenerationPrompt: true, specialTokens: vars)
            let s = before.unicodeScalars.count
            let content = Array(m.content.unicodeScalars)
            func occurs(_ needle: [Unicode.Scalar], at p: Int) -> Bool {
                p >= 0 && p + needle.count <= scalars.count && Array(scalars[p..<(p + needle.count)]) == needle
            }
            guard occurs(Array(before.unicodeScalars), at: 0) else {
                throw QLoraError.invalidArgument("chat template: the render of messages 0..<\(i) with the generation prompt is not a prefix of the whole conversation's, so assistant message \(i) cannot be located for the label mask")
            }
            var start = s
            var length = content.count
            if !occurs(content, at: s) {
                // Templates that trim content (e.g. Llama-3's `| trim`): the trimmed content,
                // possibly after spaces (Llama-2 writes ' ' + content.strip() after [/INST]).
                let trimmed = Array(JinjaBuiltins.strip(m.content, nil, left: true, right: true).unicodeScalars)
                var at = s
                while !occurs(trimmed, at: at) && at < scalars.count && scalars[at] == " " { at += 1 }
                guard occurs(trimmed, at: at) else {
                    throw QLoraError.invalidArgument("chat template: assistant message \(i)'s content does not follow its header in the rendered text")
                }
                start = at; length = trimmed.count
            }
            var end = start + length
            // The end-of-turn token closing the message, right after it or after spaces
            // (Llama-2 writes content + ' ' + eos_token).
            if let eos = vars["eos_token"], !eos.isEmpty {
                var p = end
                while p < scalars.count && (scalars[p] == " " || scalars[p] == "\n") { p += 1 }
                if occurs(Array(eos.unicodeScalars), at: p) { end = p + eos.unicodeScalars.count }
            }
            spans.append(start..<end)
        }
        var labels = [Int](repeating: -100, count: ids.count)
        for p in 0..<ids.count where !maskPrompt || spans.contains(where: { offsets[p].lowerBound < $0.upperBound && offsets[p].upperBound > $0.lowerBound }) {
            labels[p] = ids[p]
        }
        return EncodedChat(text: text, ids: ids, labels: labels, offsets: offsets, assistantSpans: spans)
    }
}
