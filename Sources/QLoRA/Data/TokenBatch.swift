/// A batch of rows, each `sequenceLength` tokens, row-major. Row r, position p is at
/// r * sequenceLength + p. Several examples may share a row (packing): `segmentIds` numbers them
/// 1, 2, ... within the row (0 = padding) and `positions` restart at 0 for each, so attention
/// must only join positions of the same segment (`attends`), and RoPE sees each example from 0.
public struct TokenBatch: Equatable, Sendable {
    public var batchSize: Int
    public var sequenceLength: Int
    public var inputIds: [Int32]
    /// The id where the token is trained, -100 elsewhere (unshifted: labels[p] belongs to ids[p]).
    public var labels: [Int32]
    public var positions: [Int32]
    public var segmentIds: [Int32]
    /// Where each example sits: (row, start position, length, source "file:line").
    public var examples: [(row: Int, start: Int, length: Int, source: String)]

    public static func == (a: TokenBatch, b: TokenBatch) -> Bool {
        a.batchSize == b.batchSize && a.sequenceLength == b.sequenceLength && a.inputIds == b.inputIds
            && a.labels == b.labels && a.positions == b.positions && a.segmentIds == b.segmentIds
            && a.examples.map { "\($0.row) \($0.start) \($0.length) \($0.source)" } == b.examples.map { "\($0.row) \($0.start) \($0.length) \($0.source)" }
    }

    /// Whether the query at (row, i) may attend to the key at (row, j): causal and within one example.
    public func attends(row: Int, query i: Int, key j: Int) -> Bool {
        let base = row * sequenceLength
        return j <= i && segmentIds[base + i] != 0 && segmentIds[base + i] == segmentIds[base + j]
    }

    /// The additive attention mask of one row, [T, T] row-major: 0 where `attends`, -inf elsewhere
    /// (a padding query attends to itself only, so its softmax stays finite).
    public func attentionMask(row: Int) -> [Float] {
        let t = sequenceLength
        var m = [Float](repeating: -Float.infinity, count: t * t)
        for i in 0..<t {
            if segmentIds[row * t + i] == 0 { m[i * t + i] = 0; continue }
            for j in 0...i where attends(row: row, query: i, key: j) { m[i * t + j] = 0 }
        }
        return m
    }

    /// The next-token targets of the causal-LM loss: targets[p] = labels[p + 1] when p + 1 is in
    /// the same example, else -100 (the last token of an example predicts nothing).
    public var shiftedTargets: [Int32] {
        var out = [Int32](repeating: Int32(TrainingExample.ignoredLabel), count: labels.count)
        for r in 0..<batchSize {
            let base = r * sequenceLength
            for p in 0..<(sequenceLength - 1) where segmentIds[base + p] != 0 && segmentIds[base + p] == segmentIds[base + p + 1] {
                out[base + p] = labels[base + p + 1]
            }
        }
        return out
    }

    /// How many targets are trained (the loss's denominator).
    public var trainedTargetCount: Int { shiftedTargets.filter { $0 != Int32(TrainingExample.ignoredLabel) }.count }
}

/// How examples are laid out in rows.
public enum BatchLayout: Equatable, Sendable {
    /// One example per row, padded to the longest in the batch (cut to `maxLength` if given).
    case padToLongest(maxLength: Int?)
    /// Examples packed back to back into rows of exactly `sequenceLength` tokens (an example
    /// longer than that is cut); attention never crosses examples (segment ids, position resets).
    case packed(sequenceLength: Int)
}

/// Cuts a dataset into batches, epoch after epoch, in an order shuffled by a seed (the same seed
/// gives the same batches on every machine).
public struct BatchIterator: Sendable {
    public let examples: [TrainingExample]
    public let batchSize: Int
    public let layout: BatchLayout
    public let padId: Int
    public let seed: UInt64
    public let shuffle: Bool

    public init(examples: [TrainingExample], batchSize: Int, layout: BatchLayout, padId: Int, seed: UInt64, shuffle: Bool = true) throws {
        guard !examples.isEmpty else { throw QLoraError.invalidArgument("no training examples") }
        guard batchSize >= 1 else { throw QLoraError.invalidArgument("batch size must be >= 1, got \(batchSize)") }
        switch layout {
        case .packed(let n) where n < 2: throw QLoraError.invalidArgument("--seq-len must be >= 2, got \(n)")
        case .padToLongest(let m?) where m < 2: throw QLoraError.invalidArgument("--seq-len must be >= 2, got \(m)")
        default: break
        }
        self.examples = examples
        self.batchSize = batchSize
        self.layout = layout
        self.padId = padId
        self.seed = seed
        self.shuffle = shuffle
    }

    /// The example order of epoch `epoch` (a Fisher-Yates shuffle seeded by seed and epoch).
    public func order(epoch: Int) -> [Int] {
        var idx = Array(0..<examples.count)
        guard shuffle else { return idx }
        var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        for i in stride(from: idx.count - 1, to: 0, by: -1) {
            let j = Int(rng.next() % UInt64(i + 1))
            idx.swapAt(i, j)
        }
        return idx
    }

    /// The batches of one epoch (the last may hold fewer rows).
    public func batches(epoch: Int) -> [TokenBatch] {
        let order = order(epoch: epoch).map { examples[$0] }
        switch layout {
        case .padToLongest(let maxLength):
            return stride(from: 0, to: order.count, by: batchSize).map { s in
                let rows = order[s..<min(s + batchSize, order.count)].map { e -> TrainingExample in
                    guard let m = maxLength, e.ids.count > m else { return e }
                    return TrainingExample(ids: Array(e.ids.prefix(m)), labels: Array(e.labels.prefix(m)), source: e.source)
                }
                let t = rows.map(\.ids.count).max()!
                return makeBatch(rows.map { [$0] }, sequenceLength: t)
            }
        case .packed(let t):
            var rows: [[TrainingExample]] = []
            var current: [TrainingExample] = []
            var used = 0
            for var e in order {
                if e.ids.count > t {
                    e = TrainingExample(ids: Array(e.ids.prefix(t)), labels: Array(e.labels.prefix(t)), source: e.source)
                }
                if used + e.ids.count > t { rows.append(current); current = []; used = 0 }
                current.append(e)
                used += e.ids.count
            }
            if !current.isEmpty { rows.append(current) }
            return stride(from: 0, to: rows.count, by: batchSize).map { s in
                makeBatch(Array(rows[s..<min(s + batchSize, rows.count)]), sequenceLength: t)
            }
        }
    }

    func makeBatch(_ rows: [[TrainingExample]], sequenceLength t: Int) -> TokenBatch {
        let n = rows.count * t
        var b = TokenBatch(batchSize: rows.count, sequenceLength: t,
                              inputIds: [Int32](repeating: Int32(padId), count: n),
                              labels: [Int32](repeating: Int32(TrainingExample.ignoredLabel), count: n),
                              positions: [Int32](repeating: 0, count: n), segmentIds: [Int32](repeating: 0, count: n), examples: [])
        for (r, row) in rows.enumerated() {
            var p = 0
            for (k, e) in row.enumerated() {
                b.examples.append((row: r, start: p, length: e.ids.count, source: e.source))
                for q in 0..<e.ids.count {
                    b.inputIds[r * t + p + q] = Int32(e.ids[q])
                    b.labels[r * t + p + q] = Int32(e.labels[q])
                    b.positions[r * t + p + q] = Int32(q)
                    b.segmentIds[r * t + p + q] = Int32(k + 1)
                }
                p += e.ids.count
            }
        }
        return b
    }
}
