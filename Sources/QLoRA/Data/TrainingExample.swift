/// One tokenized training example: ids and their labels (the id where the token is trained,
/// -100 where it is not), with the line it came from.
public struct TrainingExample: Equatable, Sendable {
    public var ids: [Int]
    public var labels: [Int]
    /// "file:line" of the JSONL record.
    public var source: String

    public init(ids: [Int], labels: [Int], source: String) {
        self.ids = ids
        self.labels = labels
        self.source = source
    }

    /// The label of an untrained position (PyTorch's cross-entropy ignore_index).
    public static let ignoredLabel = -100

    /// How many positions are trained.
    public var trainedCount: Int { labels.filter { $0 != TrainingExample.ignoredLabel }.count }
}

/// How JSONL records become training examples.
public struct DatasetOptions: Equatable, Sendable {
    /// Train only on the answer: assistant turns of `messages`, the `completion` of
    /// prompt/completion pairs (as TRL and mlx-lm do). False trains every token.
    public var maskPrompt: Bool
    /// Append the tokenizer's EOS to `text` and `prompt`/`completion` examples (when it is not
    /// already last), so the model learns to stop.
    public var appendEOS: Bool
    /// Cut examples to at most this many tokens (nil: keep them whole).
    public var maxLength: Int?

    public init(maskPrompt: Bool = true, appendEOS: Bool = true, maxLength: Int? = nil) {
        self.maskPrompt = maskPrompt
        self.appendEOS = appendEOS
        self.maxLength = maxLength
    }
}
