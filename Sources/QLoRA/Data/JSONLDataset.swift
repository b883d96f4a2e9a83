import Foundation

/// A JSONL training file: one JSON object per line, each either
/// - `{"text": "..."}`: every token trained;
/// - `{"prompt": "...", "completion": "..."}`: the text is prompt + completion, tokenized as one
///   string (as TRL does); with prompt masking a token is trained iff its characters overlap the
///   completion (the appended EOS is trained too);
/// - `{"messages": [{"role", "content"}, ...]}`: rendered with the tokenizer's chat template and
///   labelled by `BPETokenizer.encodeChat` (assistant content + its end-of-turn token).
/// Blank lines are skipped; anything else is a QLoraError naming the file and line number.
public enum JSONLDataset {
    public static func load(path: String, tokenizer: BPETokenizer, options: DatasetOptions = DatasetOptions()) throws -> [TrainingExample] {
        guard let data = FileManager.default.contents(atPath: path) else { throw QLoraError.io(file: path, reason: "cannot read the file") }
        return try parse([UInt8](data), file: path, tokenizer: tokenizer, options: options)
    }

    public static func parse(_ bytes: [UInt8], file: String, tokenizer: BPETokenizer,
                             options: DatasetOptions = DatasetOptions()) throws -> [TrainingExample] {
        if let m = options.maxLength, m < 1 { throw QLoraError.invalidArgument("maximum example length must be >= 1, got \(m)") }
        var template: ChatTemplate? = nil
        var examples: [TrainingExample] = []
        for (index, rawLine) in bytes.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            var line = Array(rawLine)
            if line.last == 0x0D { line.removeLast() }
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let at = "line \(lineNumber)"
            func bad(_ reason: String) -> QLoraError { .malformedFile(file: file, field: at, reason: reason) }
            let record: JSONValue
            do { record = try JSONValue.parse(line, file: file, field: at) }
            catch { throw bad("not valid JSON (\(error))") }
            guard case .object(let members) = record else { throw bad("expected a JSON object, got \(record.kind)") }
            let keys = Set(members.map(\.key))
            var example: TrainingExample
            let source = "\(file):\(lineNumber)"
            if keys.contains("messages") {
                guard case .array(let items)? = record["messages"], !items.isEmpty else { throw bad("'messages' must be a non-empty array") }
                var messages: [ChatMessage] = []
                for (k, item) in items.enumerated() {
                    guard case .string(let role)? = item["role"], case .string(let content)? = item["content"] else {
                        throw bad("messages[\(k)] needs string \"role\" and \"content\"")
                    }
                    messages.append(ChatMessage(role: role, content: content))
                }
                guard messages.contains(where: { $0.role == "assistant" }) || !options.maskPrompt else {
                    throw bad("no assistant message: nothing to train on with prompt masking")
                }
                if template == nil {
                    do { template = try tokenizer.parsedChatTemplate() } catch { throw bad("\(error)") }
                }
                do {
                    let e = try tokenizer.encodeChat(messages, template: template, addGenerationPrompt: false, maskPrompt: options.maskPrompt)
                    example = TrainingExample(ids: e.ids, labels: e.labels, source: source)
                } catch { throw bad("\(error)") }
            } else if keys.contains("prompt") || keys.contains("completion") {
                guard case .string(let prompt)? = record["prompt"] else { throw bad("'prompt' must be a string (with 'completion')") }
                guard case .string(let completion)? = record["completion"] else { throw bad("'completion' must be a string (with 'prompt')") }
                let (ids, offsets) = tokenizer.encodeWithOffsets(prompt + completion)
                let p = prompt.unicodeScalars.count
                let labels = zip(ids, offsets).map { id, r in !options.maskPrompt || r.upperBound > p ? id : TrainingExample.ignoredLabel }
                example = TrainingExample(ids: tokenizer.prefixIds + ids, labels: tokenizer.prefixIds.map { _ in TrainingExample.ignoredLabel } + labels, source: source)
                if !options.maskPrompt { example.labels = example.ids }
                appendEOS(&example, tokenizer, options)
            } else if keys.contains("text") {
                guard case .string(let text)? = record["text"] else { throw bad("'text' must be a string") }
                let ids = tokenizer.encode(text, addSpecialTokens: true)
                example = TrainingExample(ids: ids, labels: ids, source: source)
                appendEOS(&example, tokenizer, options)
            } else {
                throw bad("expected a 'text', 'prompt'/'completion' or 'messages' field, got " + (keys.isEmpty ? "none" : keys.sorted().joined(separator: ", ")))
            }
            if let m = options.maxLength, example.ids.count > m {
                example.ids.removeLast(example.ids.count - m)
                example.labels.removeLast(example.labels.count - m)
            }
            guard example.ids.count >= 2 else { throw bad("the example is \(example.ids.count) token(s) long: nothing to predict") }
            guard example.trainedCount > 0 else { throw bad("no token of the example is trained") }
            examples.append(example)
        }
        guard !examples.isEmpty else { throw QLoraError.malformedFile(file: file, field: "(file)", reason: "no examples (the file is empty)") }
        return examples
    }

    static func appendEOS(_ e: inout TrainingExample, _ t: BPETokenizer, _ options: DatasetOptions) {
        guard options.appendEOS, let eos = t.eosTokenId, e.ids.last != eos else { return }
        e.ids.append(eos)
        e.labels.append(eos)
    }
}
