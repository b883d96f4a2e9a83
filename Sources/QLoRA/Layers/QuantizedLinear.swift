import Foundation

/// A linear layer with a frozen 4-bit base weight and trainable LoRA adapters:
/// y = x·W_qᵀ + scaling·(x·Aᵀ)·Bᵀ + bias, with A [r, in] and B [out, r].
///
/// Calling the layer on a graph `Value` records dequantize → matmul → LoRA branch → add → bias
/// (the fusion pass turns it into one kernel); `forward` is the eager convenience that records,
/// compiles (plans cached per input shape and mode) and runs. A class: the caching toggles and
/// `setLoraWeights` change it in place, and plans already compiled see new adapter values.
public final class QuantizedLinear: @unchecked Sendable {
    public let config: QLoraConfig
    public let inFeatures: Int
    public let outFeatures: Int
    /// The module name used for labels and checkpoint keys (e.g. "model.layers.0.mlp.up_proj").
    public let name: String
    let weightStorage: QuantizedWeightStorage
    let biasStorage: ParameterStorage?
    let loraA: ParameterStorage
    let loraB: ParameterStorage
    private var cachingEnabled = false
    private var dropoutContext: LoraDropout?
    private let dropoutLock = NSLock()   // not `lock`: `forward` records the layer while holding that one
    private var plans = PlanCache<PlanKey>(capacity: 8)
    private let lock = NSLock()

    private struct PlanKey: Hashable { var shape: [Int]; var cached: Bool }

    /// Quantizes `weight` [out, in] per `config`; `bias` [out] stays full precision. A is initialised
    /// as PEFT does (kaiming-uniform with a = √5, i.e. U(-1/√in, 1/√in)), B with zeros, so a fresh
    /// layer equals its base. `seed` makes the A initialisation reproducible.
    public convenience init(weight: Tensor, bias: Tensor? = nil, config: QLoraConfig = QLoraConfig(),
                            name: String = "linear", seed: UInt64? = nil) throws {
        try self.init(weight: weight, bias: bias, config: config, name: name, seed: seed, parameterLock: ReadWriteLock())
    }

    /// `init(weight:...)` in the lock domain of `parameterLock`.
    convenience init(weight: Tensor, bias: Tensor?, config: QLoraConfig, name: String, seed: UInt64?,
                     parameterLock: ReadWriteLock) throws {
        try config.validate()
        guard weight.rank == 2, weight.shape[0] > 0, weight.shape[1] > 0 else {
            throw QLoraError.shapeMismatch(context: "QuantizedLinear weight [out, in]", expected: [0, 0], actual: weight.shape)
        }
        let q = try QuantizedTensor.quantize(weight, quantType: config.quantType, blockSize: config.blockSize,
                                             doubleQuant: config.doubleQuant, name: "\(name).weight")
        try self.init(quantizedWeight: q, bias: bias, config: config, name: name, seed: seed, lora: true, parameterLock: parameterLock)
    }

    /// A layer with an all-zero base weight: only the adapter contributes.
    public convenience init(inFeatures: Int, outFeatures: Int, config: QLoraConfig = QLoraConfig(),
                            name: String = "linear", seed: UInt64? = nil) throws {
        try self.init(inFeatures: inFeatures, outFeatures: outFeatures, config: config, name: name, seed: seed, parameterLock: ReadWriteLock())
    }

    /// `init(inFeatures:...)` in the lock domain of `parameterLock`.
    convenience init(inFeatures: Int, outFeatures: Int, config: QLoraConfig, name: String, seed: UInt64?,
                     parameterLock: ReadWriteLock) throws {
        guard inFeatures > 0, outFeatures > 0 else {
            throw QLoraError.invalidArgument("QuantizedLinear needs inFeatures > 0 and outFeatures > 0, got \(inFeatures), \(outFeatures)")
        }
        try self.init(weight: Tensor.zeros(shape: [outFeatures, inFeatures]), bias: nil, config: config, name: name, seed: seed,
                      parameterLock: parameterLock)
    }

    /// A layer over an already-quantized weight (e.g. read from a bitsandbytes checkpoint). The
    /// weight keeps its own quant type and block size; `config` supplies the LoRA settings.
    /// `lora: false` gives a frozen base layer (no adapter recorded, nothing to train), as PEFT
    /// leaves the modules outside `target_modules`.
    public convenience init(quantizedWeight: QuantizedTensor, bias: Tensor? = nil, config: QLoraConfig = QLoraConfig(),
                            name: String = "linear", seed: UInt64? = nil, lora: Bool = true) throws {
        try self.init(quantizedWeight: quantizedWeight, bias: bias, config: config, name: name, seed: seed, lora: lora,
                      parameterLock: ReadWriteLock())
    }

    /// A layer whose bias and adapters are in the lock domain of `parameterLock` (the model's:
    /// a plan over the model's layers then takes one lock for all their parameters).
    init(quantizedWeight: QuantizedTensor, bias: Tensor?, config: QLoraConfig, name: String, seed: UInt64?, lora: Bool,
         parameterLock: ReadWriteLock) throws {
        try config.validate()
        guard quantizedWeight.shape.count == 2 else {
            throw QLoraError.shapeMismatch(context: "\(name).weight [out, in]", expected: [0, 0], actual: quantizedWeight.shape)
        }
        let out = quantizedWeight.shape[0], inF = quantizedWeight.shape[1]
        if let bias {
            guard bias.shape == [out] else { throw QLoraError.shapeMismatch(context: "\(name).bias", expected: [out], actual: bias.shape) }
        }
        self.config = config
        self.name = name
        hasLora = lora
        inFeatures = inF
        outFeatures = out
        weightStorage = QuantizedWeightStorage(name: "\(name).weight", weight: quantizedWeight)
        biasStorage = try bias.map { try ParameterStorage(name: "\(name).bias", tensor: $0, trainable: false, lock: parameterLock) }
        var rng = LoraInitializer(seed: seed)
        loraA = try ParameterStorage(name: "\(name).lora_A", tensor: rng.kaimingUniform(rows: config.rank, fanIn: inF), trainable: true,
                                     lock: parameterLock)
        loraB = try ParameterStorage(name: "\(name).lora_B", tensor: Tensor.zeros(shape: [out, config.rank]), trainable: true,
                                     lock: parameterLock)
        if config.dropout > 0 { dropoutContext = try LoraDropout(probability: config.dropout, seed: seed ?? 0) }
        if config.cacheDequantized { try enableWeightCaching() }
    }

    /// LoRA dropout on the branch input (nil or p = 0: none). Set it before recording the layer;
    /// graphs recorded earlier keep what they were recorded with.
    public var dropout: LoraDropout? {
        get { dropoutLock.lock(); defer { dropoutLock.unlock() }; return dropoutContext }
        set { dropoutLock.lock(); dropoutContext = newValue; dropoutLock.unlock() }
    }

    /// Re-initialises the adapter as a fresh PEFT adapter: A per `initialization` from `seed`, B = 0.
    public func initializeLora(_ initialization: LoraInitialization, seed: UInt64) throws {
        var rng = LoraInitializer(seed: seed)
        let a: Tensor
        switch initialization {
        case .kaimingUniform: a = rng.kaimingUniform(rows: config.rank, fanIn: inFeatures)
        case .gaussian: a = rng.gaussian(rows: config.rank, columns: inFeatures, std: 1 / Float(config.rank))
        }
        try setLoraWeights(a: a, b: Tensor.zeros(shape: [outFeatures, config.rank]))
    }

    /// The tensors training updates: LoRA A and B (gather several layers' into one
    /// `ParameterStore` for a flat parameter and gradient buffer).
    public var trainableParameters: [ParameterStorage] { hasLora ? [loraA, loraB] : [] }

    /// False for a frozen base layer (`lora: false`): it records x·Wᵀ + bias only.
    public let hasLora: Bool

    /// The adapters (A [r, in], B [out, r]).
    public var loraWeights: (a: Tensor, b: Tensor) { (loraA.tensor, loraB.tensor) }

    /// Replaces both adapters after checking their shapes and values; compiled plans see the new values.
    public func setLoraWeights(a: Tensor, b: Tensor) throws {
        guard a.shape == loraA.shape else { throw QLoraError.shapeMismatch(context: "\(name): lora A [r, in]", expected: loraA.shape, actual: a.shape) }
        guard b.shape == loraB.shape else { throw QLoraError.shapeMismatch(context: "\(name): lora B [out, r]", expected: loraB.shape, actual: b.shape) }
        try a.firstNonFiniteIndex.map { throw QLoraError.invalidArgument("\(name): lora A has non-finite value \(a.scalars[$0]) at flat index \($0)") }
        try b.firstNonFiniteIndex.map { throw QLoraError.invalidArgument("\(name): lora B has non-finite value \(b.scalars[$0]) at flat index \($0)") }
        try loraA.assign(a)
        try loraB.assign(b)
    }

    /// The frozen base weight.
    public var quantizedWeight: QuantizedTensor { weightStorage.weight }
    /// Bytes of the frozen 4-bit weight (codes + statistics), without copying it.
    public var weightMemoryBytes: Int { weightStorage.memoryBytes }
    /// The bias, if any.
    public var bias: Tensor? { biasStorage?.tensor }

    /// The adapter's factor: alpha / r, or alpha / √r with rsLoRA.
    public var scaling: Float { config.scaling }

    /// r · (in + out): the LoRA parameters (the base weight and bias are frozen).
    public var numTrainableParameters: Int { hasLora ? config.rank * (inFeatures + outFeatures) : 0 }

    /// Packed weight + quant statistics + LoRA A and B + bias, plus the f32 cache while caching is on.
    public var memoryBytes: Int {
        weightStorage.memoryBytes + loraA.memoryBytes + loraB.memoryBytes + (biasStorage?.memoryBytes ?? 0) + weightStorage.cacheBytes
    }

    /// Dequantizes the base weight once and keeps the f32 copy; `forward` then uses cached plans.
    public func enableWeightCaching() throws {
        lock.lock(); defer { lock.unlock() }
        _ = weightStorage.dequantized(threads: Runtime.defaultThreads)
        cachingEnabled = true
    }

    /// Drops the f32 copy and the plans that use it; `forward` returns to on-the-fly dequantization.
    public func disableWeightCaching() {
        lock.lock(); defer { lock.unlock() }
        cachingEnabled = false
        weightStorage.dropCache()
        plans.removeAll { $0.cached }
    }

    public var isWeightCached: Bool { lock.lock(); defer { lock.unlock() }; return cachingEnabled }

    /// How many compiled plans `forward` keeps (one per input shape and mode; default 8, at least
    /// 1). When a new shape would exceed it, the least recently used plan is dropped.
    public var planCacheCapacity: Int {
        get { lock.lock(); defer { lock.unlock() }; return plans.capacity }
        set { lock.lock(); defer { lock.unlock() }; plans.setCapacity(newValue) }
    }

    /// The input shapes whose plans `forward` holds, least recently used first.
    var cachedPlanShapes: [[Int]] { lock.lock(); defer { lock.unlock() }; return plans.keys.map(\.shape) }

    /// Records this layer applied to `x` ([in], [M, in] or [B, S, in]) into x's graph.
    public func callAsFunction(_ x: Value) throws -> Value {
        let g = x.graph
        guard let last = x.shape.last, g.sameDimension(last, inFeatures), (1...3).contains(x.shape.count) else {
            throw QLoraError.shapeMismatch(context: "\(name) input [..., in]", expected: Array(x.shape.dropLast()) + [inFeatures], actual: x.shape)
        }
        let w = g.quantizedWeight(weightStorage)
        let base = try g.matmul(x, try g.dequantize(w, label: "\(name).dequantize"), label: hasLora ? "\(name).base" : name)
        guard hasLora else { return try biasStorage.map { try g.add(base, g.parameter($0), label: "\(name).bias") } ?? base }
        // PEFT's placement: dropout on the LoRA branch's input only (the base path sees x).
        var branchInput = x
        if let dropout, dropout.probability > 0 {
            branchInput = try g.dropout(x, context: dropout, stream: LoraDropout.stream(for: name), label: "\(name).lora_dropout")
        }
        let xa = try g.matmul(branchInput, g.parameter(loraA), label: "\(name).lora_A")
        let xab = try g.matmul(xa, g.parameter(loraB), label: "\(name).lora_B")
        let lora = try g.scale(xab, by: scaling, label: "\(name).scaling")
        var y = try g.add(base, lora, label: name)
        if let biasStorage { y = try g.add(y, g.parameter(biasStorage), label: "\(name).bias") }
        return y
    }

    /// Computes the layer on `x` ([M, in] or [B, S, in]): records, compiles (once per shape and
    /// mode) and runs the fused plan.
    public func forward(_ x: Tensor) throws -> Tensor {
        guard (2...3).contains(x.rank), x.shape.last == inFeatures, x.shape.allSatisfy({ $0 > 0 }) else {
            throw QLoraError.shapeMismatch(context: "\(name).forward input [M, in] or [B, S, in]",
                                           expected: Array(x.shape.dropLast()) + [inFeatures], actual: x.shape)
        }
        let plan = try plan(for: x.shape)
        return try plan.run(["x": x])["y"]!
    }

    private func plan(for shape: [Int]) throws -> ExecutablePlan {
        lock.lock(); defer { lock.unlock() }
        return try plans.plan(for: PlanKey(shape: shape, cached: cachingEnabled)) {
            let g = Graph()
            g.output("y", try self(g.input("x", shape: shape)))
            return try g.compile(CompileOptions(mode: cachingEnabled ? .cached : .onTheFly, computeType: config.computeType))
        }
    }
}
