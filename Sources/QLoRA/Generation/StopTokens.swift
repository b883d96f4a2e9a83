/// The tokens that end a generated answer: the model's eos ids (config.json / GGUF metadata), the
/// tokenizer's eos token, and the chat template's end-of-turn token. Instruct models often close
/// a turn with a token that is not their configured eos (Llama-3's `<|eot_id|>`; a ChatML model
/// whose eos is `<|endoftext|>` closes turns with `<|im_end|>`), so generation would run past the
/// answer without it.
extension BPETokenizer {
    /// The special token a template writes right after an assistant message's content (spaces
    /// and newlines between skipped), found by rendering a one-exchange conversation with a
    /// marker as the answer; nil when there is none or the template rejects that conversation.
    public func endOfTurnTokenId(template: ChatTemplate) -> Int? {
        let marker = "\u{2063}MARKER\u{2063}"
        let messages = [ChatMessage(role: "user", content: "Hi"), ChatMessage(role: "assistant", content: marker)]
        guard let text = try? template.render(messages, addGenerationPrompt: false, specialTokens: specialTokenVariables),
              let r = text.range(of: marker) else { return nil }
        let after = text[r.upperBound...].drop(while: { $0 == " " || $0 == "\n" })
        guard let first = encode(String(after)).first, isSpecialToken(first) else { return nil }
        return first
    }

    /// `modelEOS` ∪ this tokenizer's eos ∪ the template's end-of-turn token.
    public func stopTokenIds(modelEOS: [Int], template: ChatTemplate?) -> Set<Int> {
        var ids = Set(modelEOS)
        if let eosTokenId { ids.insert(eosTokenId) }
        if let template, let t = endOfTurnTokenId(template: template) { ids.insert(t) }
        return ids
    }
}
