import Foundation

/// The `TrainingStep` of a Llama causal LM: forward, transformers' shifted cross-entropy over
/// `labels` (-100 ignored), backward into the LoRA parameters — one compiled plan per batch shape
/// [batch, seq], compiled on first use and kept (a padded dataset has a few lengths).
public final class CausalLMTrainingStep: TrainingStep {
    public let model: LlamaModel
    public let parameters: ParameterStore
    public let options: CompileOptions
    private var plans: [[Int]: ExecutablePlan] = [:]
    private var evalPlans: [[Int]: ExecutablePlan] = [:]
    private let lock = NSLock()

    /// `dropout` (if any) is attached to every LoRA layer before the plans are recorded.
    public init(model: LlamaModel, options: CompileOptions = CompileOptions(), dropout: LoraDropout? = nil) throws {
        guard !model.trainableParameters.isEmpty else {
            throw QLoraError.invalidArgument("the model has no LoRA adapter to train (give an adapter or target modules)")
        }
        self.model = model
        self.options = options
        parameters = try ParameterStore(gathering: model.trainableParameters)
        if let dropout { for layer in model.loraLayers { layer.dropout = dropout } }
    }

    /// The plan for `shape` [batch, seq] (inputs `input_ids`, `labels`; output `loss`).
    public func plan(shape: [Int]) throws -> ExecutablePlan {
        lock.lock(); defer { lock.unlock() }
        if let p = plans[shape] { return p }
        let g = Graph()
        let ids = g.input("input_ids", shape: shape, element: .int32)
        let labels = g.input("labels", shape: shape, element: .int32)
        let loss = try g.causalLMLoss(try model.record(inputIds: ids).logits, labels: labels, label: "loss")
        g.output("loss", loss)
        try g.backward(from: loss, parameters: parameters)
        let p = try g.compile(options)
        plans[shape] = p
        return p
    }

    /// The mean loss over every trained position of `batches` (forward only, dropout off): each
    /// batch's mean weighted by its trained positions.
    public func evaluate(_ batches: CausalLMBatches) throws -> Double {
        // Evaluation is in eval mode even when called between training steps.
        let dropout = model.loraLayers.first?.dropout, wasTraining = dropout?.isTraining
        dropout?.isTraining = false
        defer { if let wasTraining { dropout?.isTraining = wasTraining } }
        var total = 0.0, terms = 0
        for b in batches.batches {
            guard let ids = b.ids["input_ids"], let labels = b.ids["labels"] else { continue }
            let plan: ExecutablePlan = try {
                lock.lock(); defer { lock.unlock() }
                if let p = evalPlans[ids.shape] { return p }
                let g = Graph()
                let i = g.input("input_ids", shape: ids.shape, element: .int32), l = g.input("labels", shape: ids.shape, element: .int32)
                g.output("loss", try g.causalLMLoss(try model.record(inputIds: i).logits, labels: l, label: "loss"))
                let p = try g.compile(options)
                evalPlans[ids.shape] = p
                return p
            }()
            let loss = try plan.run([:], ids: ["input_ids": ids, "labels": labels])["loss"]!.scalars[0]
            total += Double(loss) * Double(b.lossTerms)
            terms += b.lossTerms
        }
        guard terms > 0 else { throw QLoraError.invalidArgument("the evaluation data has no trained position") }
        return total / Double(terms)
    }

    public func run(_ batch: TrainingBatch) throws -> Float {
        guard let ids = batch.ids["input_ids"], let labels = batch.ids["labels"] else {
            throw QLoraError.invalidArgument("a causal-LM batch needs int tensors 'input_ids' and 'labels'")
        }
        let vocab = model.config.vocabSize
        if let bad = ids.scalars.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw QLoraError.invalidArgument("input_ids holds \(bad), outside the model's vocabulary 0..<\(vocab)")
        }
        if let bad = labels.scalars.first(where: { $0 != -100 && ($0 < 0 || Int($0) >= vocab) }) {
            throw QLoraError.invalidArgument("labels hold \(bad): a label is -100 (ignored) or a token id in 0..<\(vocab)")
        }
        let result = try plan(shape: ids.shape).run([:], ids: ["input_ids": ids, "labels": labels])
        return result["loss"]!.scalars[0]
    }
}

/// Token batches for a causal LM: each is `input_ids` and `labels` (unshifted: labels[t] belongs to
/// input_ids[t]; the loss shifts) [rows, seq]; a batch weighs by the positions it trains, so
/// accumulated micro-batches give the mean over every trained token, as one larger batch would.
public struct CausalLMBatches: BatchSource {
    public let batches: [TrainingBatch]

    public var count: Int { batches.count }
    public func batch(_ index: Int) throws -> TrainingBatch {
        guard index >= 0, index < batches.count else { throw QLoraError.invalidArgument("batch \(index) outside 0..<\(batches.count)") }
        return batches[index]
    }

    /// From a tokenised dataset. Only right-padded rows: attention is causal over the whole row, so
    /// packed rows (several examples per row) would attend across examples and are refused.
    public init(_ tokenBatches: [TokenBatch], source: String) throws {
        var out: [TrainingBatch] = []
        for (n, b) in tokenBatches.enumerated() {
            if b.segmentIds.contains(where: { $0 > 1 }) {
                throw QLoraError.unsupported("\(source): batch \(n) packs several examples into one row; causal-LM training needs one example per row (padded batches)")
            }
            let shape = [b.batchSize, b.sequenceLength]
            let trained = b.trainedTargetCount
            guard trained > 0 else { continue }  // nothing to learn from (all prompt): skipped, not a NaN loss
            out.append(TrainingBatch(feeds: [:], ids: ["input_ids": try IntTensor(shape: shape, scalars: b.inputIds),
                                                       "labels": try IntTensor(shape: shape, scalars: b.labels)],
                                     lossTerms: trained, tokens: b.segmentIds.filter { $0 != 0 }.count))
        }
        guard !out.isEmpty else { throw QLoraError.invalidArgument("\(source): no example has a trained token (every label is -100)") }
        batches = out
    }

    /// From token-id tensors: `input_ids` [N, T] and optional `labels` [N, T] (default: input_ids),
    /// split into batches of `batchSize` rows (all rows when nil; trailing rows dropped).
    public init(inputIds: IntTensor, labels: IntTensor?, batchSize: Int?, source: String) throws {
        guard inputIds.shape.count == 2, inputIds.shape.allSatisfy({ $0 > 0 }) else {
            throw QLoraError.shapeMismatch(context: "\(source): input_ids [rows, seq]", expected: [1, 1], actual: inputIds.shape)
        }
        if let labels, labels.shape != inputIds.shape {
            throw QLoraError.shapeMismatch(context: "\(source): labels (one per input id)", expected: inputIds.shape, actual: labels.shape)
        }
        let n = inputIds.shape[0], t = inputIds.shape[1], size = batchSize ?? n
        guard size > 0, size <= n else { throw QLoraError.invalidArgument("--batch-size must be in 1...\(n) (the rows of \(source)), got \(size)") }
        let labelScalars = labels?.scalars ?? inputIds.scalars
        var out: [TrainingBatch] = []
        for s in stride(from: 0, to: n - size + 1, by: size) {
            let range = (s * t)..<((s + size) * t)
            let ids = Array(inputIds.scalars[range]), lab = Array(labelScalars[range])
            var trained = 0
            for r in 0..<size { for p in 1..<t where lab[r * t + p] != -100 { trained += 1 } }
            guard trained > 0 else { continue }
            out.append(TrainingBatch(feeds: [:], ids: ["input_ids": try IntTensor(shape: [size, t], scalars: ids),
                                                       "labels": try IntTensor(shape: [size, t], scalars: lab)],
                                     lossTerms: trained, tokens: size * t))
        }
        guard !out.isEmpty else { throw QLoraError.invalidArgument("\(source): no row has a trained label after the first position") }
        batches = out
    }
}
