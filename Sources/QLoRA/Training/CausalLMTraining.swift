import Foundation

/// The `TrainingStep` of a Llama causal LM: forward, transformers' shifted cross-entropy over
/// `labels` (-100 ignored), backward into the LoRA parameters — one compiled plan per batch shape
/// [batch, seq], compiled on first use and kept (a padded dataset has a few lengths). A batch with
/// int `position_ids` holds packed rows: RoPE restarts and attention stays inside each example.
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

    /// The plan for `shape` [batch, seq] (inputs `input_ids`, `labels`, and with `packed`
    /// `position_ids`; output `loss`).
    public func plan(shape: [Int], packed: Bool = false) throws -> ExecutablePlan {
        lock.lock(); defer { lock.unlock() }
        let key = shape + [packed ? 1 : 0]
        if let p = plans[key] { return p }
        let g = Graph()
        let loss = try recordLoss(g, shape: shape, packed: packed)
        g.output("loss", loss)
        try g.backward(from: loss, parameters: parameters)
        let p = try g.compile(options)
        plans[key] = p
        return p
    }

    private func recordLoss(_ g: Graph, shape: [Int], packed: Bool) throws -> Value {
        let ids = g.input("input_ids", shape: shape, element: .int32)
        let labels = g.input("labels", shape: shape, element: .int32)
        let positions = packed ? g.input("position_ids", shape: shape, element: .int32) : nil
        return try g.causalLMLoss(try model.record(inputIds: ids, positionIds: positions).logits, labels: labels, label: "loss")
    }

    /// The int inputs of a batch's plan (`position_ids` only for packed batches).
    private static func planInputs(_ b: TrainingBatch) throws -> (ids: [String: IntTensor], packed: Bool) {
        guard let ids = b.ids["input_ids"], let labels = b.ids["labels"] else {
            throw QLoraError.invalidArgument("a causal-LM batch needs int tensors 'input_ids' and 'labels'")
        }
        guard let positions = b.ids["position_ids"] else { return (["input_ids": ids, "labels": labels], false) }
        guard positions.shape == ids.shape else {
            throw QLoraError.shapeMismatch(context: "position_ids (one per input id)", expected: ids.shape, actual: positions.shape)
        }
        return (["input_ids": ids, "labels": labels, "position_ids": positions], true)
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
            let (inputs, packed) = try Self.planInputs(b)
            let shape = inputs["input_ids"]!.shape
            let plan: ExecutablePlan = try {
                lock.lock(); defer { lock.unlock() }
                let key = shape + [packed ? 1 : 0]
                if let p = evalPlans[key] { return p }
                let g = Graph()
                g.output("loss", try recordLoss(g, shape: shape, packed: packed))
                let p = try g.compile(options)
                evalPlans[key] = p
                return p
            }()
            let loss = try plan.run([:], ids: inputs)["loss"]!.scalars[0]
            total += Double(loss) * Double(b.lossTerms)
            terms += b.lossTerms
        }
        guard terms > 0 else { throw QLoraError.invalidArgument("the evaluation data has no trained position") }
        return total / Double(terms)
    }

    public func plan(for batch: TrainingBatch) throws -> ExecutablePlan? {
        let (inputs, packed) = try Self.planInputs(batch)
        return try plan(shape: inputs["input_ids"]!.shape, packed: packed)
    }

    public func run(_ batch: TrainingBatch) throws -> Float {
        let (inputs, packed) = try Self.planInputs(batch)
        let ids = inputs["input_ids"]!, labels = inputs["labels"]!
        let vocab = model.config.vocabSize
        if let bad = ids.scalars.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw QLoraError.invalidArgument("input_ids holds \(bad), outside the model's vocabulary 0..<\(vocab)")
        }
        if let bad = labels.scalars.first(where: { $0 != -100 && ($0 < 0 || Int($0) >= vocab) }) {
            throw QLoraError.invalidArgument("labels hold \(bad): a label is -100 (ignored) or a token id in 0..<\(vocab)")
        }
        let result = try plan(shape: ids.shape, packed: packed).run([:], ids: inputs)
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

    /// From a tokenised dataset. Padded rows (one example each) are `input_ids` and `labels`.
    /// With `packed`, rows may hold several examples (`BatchLayout.packed`): the batch also carries
    /// `position_ids` (restarting at 0 for each example; attention stays inside an example) and
    /// each example's first label is -100, so no example is scored on the previous one's last
    /// token (as TRL's DataCollatorWithFlattening). Without `packed` such rows are refused.
    public init(_ tokenBatches: [TokenBatch], source: String, packed: Bool = false) throws {
        var out: [TrainingBatch] = []
        for (n, b) in tokenBatches.enumerated() {
            if !packed, b.segmentIds.contains(where: { $0 > 1 }) {
                throw QLoraError.unsupported("\(source): batch \(n) packs several examples into one row; give packed: true (the CLI's --packing) to train on packed rows")
            }
            let shape = [b.batchSize, b.sequenceLength]
            let trained = b.trainedTargetCount
            guard trained > 0 else { continue }  // nothing to learn from (all prompt): skipped, not a NaN loss
            var labels = b.labels
            var ids = ["input_ids": try IntTensor(shape: shape, scalars: b.inputIds)]
            if packed {
                for e in b.examples { labels[e.row * b.sequenceLength + e.start] = Int32(TrainingExample.ignoredLabel) }
                ids["position_ids"] = try IntTensor(shape: shape, scalars: b.positions)
            }
            ids["labels"] = try IntTensor(shape: shape, scalars: labels)
            out.append(TrainingBatch(feeds: [:], ids: ids, lossTerms: trained, tokens: b.segmentIds.filter { $0 != 0 }.count))
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
