import Foundation

/// How `GraphDefinition.load` builds the graph.
public struct GraphLoadOptions: Sendable {
    /// Shapes of the actual inputs by name (they set the batch dimensions "..." and any named dims).
    public var inputShapes: [String: [Int]] = [:]
    /// LoRA weights for the linear modules it names (the rest keep a fresh init: A random, B zero).
    public var adapter: LoraAdapter?
    /// Seed of the fresh A initialisation, so repeated loads give identical plans.
    public var seed: UInt64 = 0

    public init(inputShapes: [String: [Int]] = [:], adapter: LoraAdapter? = nil, seed: UInt64 = 0) {
        self.inputShapes = inputShapes
        self.adapter = adapter
        self.seed = seed
    }
}

/// A graph file turned into a recorded `Graph`, with the layers it made.
public struct LoadedGraph: @unchecked Sendable {
    public let definition: GraphDefinition
    public let graph: Graph
    /// Every named dimension's value.
    public let dims: [String: Int]
    /// The inputs in declaration order with their concrete shapes.
    public let inputs: [(name: String, shape: [Int])]
    /// The QuantizedLinear of each checkpoint module, by module path.
    public let layers: [String: QuantizedLinear]
    /// Things worth telling the user (adapter entries the graph does not use, ...).
    public let notes: [String]
}

extension GraphDefinition {
    /// Resolves the dimensions, reads the weights the ops name (or makes zero weights when
    /// `weights` is nil, shapes then coming from `dims`), and records the graph.
    public func load(weights: CheckpointWeights?, options: GraphLoadOptions = GraphLoadOptions()) throws -> LoadedGraph {
        var resolver = DimensionResolver(def: self, weights: weights)
        try resolver.resolve(inputShapes: options.inputShapes)
        for name in options.inputShapes.keys.sorted() where !inputs.contains(where: { $0.name == name }) {
            throw QLoraError.invalidArgument("the graph \(file) has no input '\(name)' (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
        }
        let g = Graph()
        var values: [String: Value] = [:]
        var concreteInputs: [(name: String, shape: [Int])] = []
        for input in inputs {
            let shape = try resolver.concrete(input.shape, at: "\(input.path).shape")
            values[input.name] = g.input(input.name, shape: shape)
            concreteInputs.append((input.name, shape))
        }
        var layers: [String: QuantizedLinear] = [:]
        let lora = options.adapter?.modules ?? [:]
        for op in ops {
            let xs = op.inputs.map { values[$0]! }
            let neededBy = "\(op.path) of \(file)"
            let y: Value
            do {
                switch op.kind {
                case let .linear(module, out, rule):
                    let layer = try layers[module] ?? makeLayer(module, out: out, bias: rule, input: xs[0], weights: weights,
                                                                 resolver: resolver, lora: lora[module], seed: options.seed &+ UInt64(layers.count),
                                                                 neededBy: neededBy, outPath: GraphFileParser(file: file).locate(op.path, ".out"))
                    layers[module] = layer
                    y = try layer(xs[0])
                case .add: y = try g.add(xs[0], xs[1], label: op.output)
                case .mul: y = try g.mul(xs[0], xs[1], label: op.output)
                case .silu: y = try g.silu(xs[0], label: op.output)
                case .gelu: y = try g.gelu(xs[0], label: op.output)
                case .relu: y = try g.relu(xs[0], label: op.output)
                case let .scale(s): y = try g.scale(xs[0], by: s, label: op.output)
                case let .reshape(target):
                    y = try g.reshape(xs[0], to: resolver.concrete(target, at: GraphFileParser(file: file).locate(op.path, ".shape")),
                                      label: op.output)
                case let .rmsNorm(weight, eps):
                    let w = try weights?.tensor(weight, neededBy: neededBy)
                        ?? Tensor(shape: [xs[0].shape.last!], scalars: [Float](repeating: 1, count: xs[0].shape.last!))
                    let p = try ParameterStorage(name: weight, tensor: w, trainable: false)
                    y = try g.rmsNorm(xs[0], weight: g.parameter(p), eps: eps, label: op.output)
                }
            } catch let e as QLoraError {
                switch e {
                case .malformedFile, .missingTensor, .graphMismatch: throw e
                default: throw QLoraError.graphMismatch(graph: file, field: op.path, reason: e.description)
                }
            }
            values[op.output] = y
        }
        for o in outputs { g.output(o.name, values[o.value]!) }
        var notes: [String] = []
        for module in lora.keys.sorted() where layers[module] == nil {
            notes.append("adapter has weights for '\(module)', which the graph \(name) does not use; ignored")
        }
        return LoadedGraph(definition: self, graph: g, dims: resolver.values, inputs: concreteInputs, layers: layers, notes: notes)
    }

    private func makeLayer(_ module: String, out: Dim?, bias rule: BiasRule, input: Value, weights: CheckpointWeights?,
                           resolver: DimensionResolver, lora: LoraModuleWeights?, seed: UInt64, neededBy: String,
                           outPath: String) throws -> QuantizedLinear {
        var config = QLoraConfig()
        if let lora { config = try GraphDefinition.config(for: lora) }
        let layer: QuantizedLinear
        if let weights {
            let weight = try weights.quantizedWeight("\(module).weight", neededBy: neededBy)
            let biasName = "\(module).bias"
            if rule == .required, !weights.contains(biasName) { throw weights.missing(biasName, neededBy: neededBy) }
            let bias = rule != .none && weights.contains(biasName) ? try weights.tensor(biasName, neededBy: neededBy) : nil
            if let bias, bias.shape != [weight.shape[0]] {
                throw QLoraError.malformedFile(file: weights.path, field: biasName,
                                               reason: "shape disagreement: expected [\(weight.shape[0])] (out of \(module).weight \(weight.shape)), got \(bias.shape)")
            }
            layer = try QuantizedLinear(quantizedWeight: weight, bias: bias, config: config, name: module, seed: seed)
        } else {
            guard let out, let n = resolver.value(out) else {
                throw resolver.bad(outPath, "dimension '\(out.map(\.description) ?? "out")' has no value: pass --weights or --dim \(out.map(\.description) ?? "out")=N")
            }
            layer = try QuantizedLinear(inFeatures: input.shape.last!, outFeatures: n, config: config, name: module, seed: seed)
        }
        if let lora {
            guard lora.a.shape == [lora.rank, layer.inFeatures], lora.b.shape == [layer.outFeatures, lora.rank] else {
                throw QLoraError.shapeMismatch(context: "adapter weights of '\(module)' (lora_A [r, in], lora_B [out, r]) vs its weight [\(layer.outFeatures), \(layer.inFeatures)]",
                                               expected: [lora.rank, layer.inFeatures, layer.outFeatures, lora.rank],
                                               actual: lora.a.shape + lora.b.shape)
            }
            try layer.setLoraWeights(a: lora.a, b: lora.b)
        }
        return layer
    }

    /// A layer config whose `scaling` is exactly the adapter's (PEFT computes it in double and
    /// rounds; alpha / r in float can differ by an ulp, so alpha is nudged until they agree).
    static func config(for lora: LoraModuleWeights) throws -> QLoraConfig {
        var config = QLoraConfig()
        config.rank = lora.rank
        config.useRSLoRA = false
        let alpha = lora.scaling * Float(lora.rank)
        config.alpha = [alpha, alpha.nextUp, alpha.nextDown].first { $0 / Float(lora.rank) == lora.scaling } ?? alpha
        try config.validate()
        return config
    }
}
