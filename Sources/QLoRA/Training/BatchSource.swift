import Foundation

/// One (micro-)batch: the plan's inputs by name, how much it weighs in a larger batch, and how
/// many tokens (rows) it holds for throughput.
public struct TrainingBatch: @unchecked Sendable {
    public var feeds: [String: Tensor]
    /// Integer inputs by name (token ids, labels).
    public var ids: [String: IntTensor]
    /// The number of loss terms (for a mean loss: its elements); accumulation weighs micro-batches by it.
    public var lossTerms: Int
    public var tokens: Int

    public init(feeds: [String: Tensor], ids: [String: IntTensor] = [:], lossTerms: Int, tokens: Int) {
        self.feeds = feeds
        self.ids = ids
        self.lossTerms = lossTerms
        self.tokens = tokens
    }
}

/// Where a `Trainer` gets its batches: `count` per epoch, any of them by index (the trainer
/// chooses the order, so shuffling is reproducible from the seed and a resumed run sees the same
/// sequence). A JSONL / tokenised dataset plugs in here.
public protocol BatchSource {
    var count: Int { get }
    func batch(_ index: Int) throws -> TrainingBatch
}

/// Tensors split along their leading dimension into batches of `batchSize` rows (every tensor
/// must have the same leading size N). N % batchSize trailing rows are left out of each epoch (as
/// DataLoader's drop_last; with shuffling a different few each epoch). `lossKey` names the tensor
/// whose element count is a batch's loss terms; `tokens` counts the rows of the first tensor up to
/// its last dimension.
public struct TensorBatches: BatchSource {
    public let tensors: [String: Tensor]
    public let batchSize: Int
    public let rows: Int
    public let lossKey: String
    private let rowElements: [String: Int]

    public init(_ tensors: [String: Tensor], batchSize: Int?, lossKey: String, source: String) throws {
        guard let first = tensors.keys.sorted().first else { throw QLoraError.invalidArgument("\(source): no tensors to batch") }
        guard tensors[lossKey] != nil else { throw QLoraError.invalidArgument("\(source): no tensor '\(lossKey)'") }
        let n = tensors[first]!.shape.first ?? 1
        if batchSize != nil {
            for (name, t) in tensors.sorted(by: { $0.key < $1.key }) {
                guard t.shape.count >= 2 else {
                    throw QLoraError.invalidArgument("\(source): '\(name)' has shape \(t.shape); batching splits the leading dimension, which needs at least 2 dimensions")
                }
                guard t.shape[0] == n else {
                    throw QLoraError.shapeMismatch(context: "\(source): '\(name)' leading dimension (every tensor is split into batches along it, like '\(first)')",
                                                   expected: [n] + t.shape.dropFirst(), actual: t.shape)
                }
            }
        }
        let size = batchSize ?? n
        guard size > 0 else { throw QLoraError.invalidArgument("--batch-size must be > 0, got \(size)") }
        guard size <= n else { throw QLoraError.invalidArgument("--batch-size \(size) is larger than the \(n) rows of \(source)") }
        self.tensors = tensors
        self.batchSize = size
        rows = n
        self.lossKey = lossKey
        rowElements = tensors.mapValues { $0.count / max(1, $0.shape.first ?? 1) }
    }

    public var count: Int { rows / batchSize }

    /// Rows the batches leave out per epoch.
    public var droppedRows: Int { rows % batchSize }

    public func batch(_ index: Int) throws -> TrainingBatch {
        guard index >= 0, index < count else { throw QLoraError.invalidArgument("batch \(index) outside 0..<\(count)") }
        if count == 1 && batchSize == rows {
            let t = tensors[lossKey]!
            return TrainingBatch(feeds: tensors, lossTerms: t.count, tokens: tokenCount(tensors))
        }
        var feeds: [String: Tensor] = [:]
        for (name, t) in tensors {
            let per = rowElements[name]!
            let start = index * batchSize * per
            feeds[name] = Tensor(uncheckedShape: [batchSize] + t.shape.dropFirst(), scalars: Array(t.scalars[start..<(start + batchSize * per)]))
        }
        return TrainingBatch(feeds: feeds, lossTerms: feeds[lossKey]!.count, tokens: tokenCount(feeds))
    }

    private func tokenCount(_ feeds: [String: Tensor]) -> Int {
        let inputs = feeds.filter { $0.key != lossKey }.sorted { $0.key < $1.key }
        guard let shape = (inputs.first ?? feeds.first)?.value.shape else { return 1 }
        return max(1, shape.dropLast().reduce(1, *))
    }
}
