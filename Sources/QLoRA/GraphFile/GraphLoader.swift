import Foundation

/// How `GraphDefinition.load` builds the graph.
public struct GraphLoadOptions: Sendable {
    /// Shapes of the actual inputs by name (they set the batch dimensions "..." and any named dims).
    public var inputShapes: [String: [Int]] = [:]
    /// LoRA weights for the linear modules it names (the rest keep a fresh init: A random, B zero).
    public var adapter: LoraAdapter?
    /// Seed of the fresh A initialisation, so repeated loads give identical plans.
    public var seed: UInt64 = 0
    /// Rank, alpha and rsLoRA of the layers the adapter does not cover (nil: `QLoraConfig()`'s).
    public var freshLora: QLoraConfig?
    /// LoRA dropout for the layers `dropoutTargets` names by PEFT suffix matching (nil: every layer),
    /// set before each is recorded.
    public var dropout: LoraDropout?
    public var dropoutTargets: [String]?

    public init(inputShapes: [String: [Int]] = [:], adapter: LoraAdapter? = nil, seed: UInt64 = 0, freshLora: QLoraConfig? = nil) {
        self.inputShapes = inputShapes
        self.adapter = adapter
        self.seed = seed
        self.freshLora = freshLora
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
    /// Records the graph with its named dimensions as symbolic dimensions of the IR, sized (in this
    /// order) by `dims`/`--dim`, the actual inputs' shapes and the weights the ops read: the type
    /// rules bind a symbol when it meets a size, as for any recorded graph. Reads the weights the ops
    /// name (or makes zero weights when `weights` is nil, shapes then coming from `dims`).
    public func load(weights: (any GraphWeightSource)?, options: GraphLoadOptions = GraphLoadOptions()) throws -> LoadedGraph {
        let g = Graph()
        for (name, size) in self.dims { _ = g.bindDimension(SymbolicDimension.named(name), size, source: "--dim or the graph's dims") }
        if let model = weights as? LlamaCheckpoint {
            for (name, size) in model.graphDims.sorted(by: { $0.key < $1.key }) {
                if let disagreement = g.bindDimension(SymbolicDimension.named(name), size, source: "the config of \(model.path)") {
                    throw mismatch("$.dims.\(name)", disagreement)
                }
            }
        }
        /// Full-precision checkpoint tensors as parameters, one storage per tensor (a tied lm_head shares the table).
        var parameters: [String: ParameterStorage] = [:]
        let parameterLock = ReadWriteLock()   // one lock domain for every parameter the graph loads
        func parameter(_ name: String, weights: any GraphWeightSource, neededBy: String) throws -> ParameterStorage {
            if let p = parameters[name] { return p }
            let p = try ParameterStorage(name: name, tensor: weights.tensor(name, neededBy: neededBy), trainable: false, lock: parameterLock)
            parameters[name] = p
            return p
        }
        let batch = try bindInputs(options.inputShapes, g)
        for name in options.inputShapes.keys.sorted() where !inputs.contains(where: { $0.name == name }) {
            throw QLoraError.invalidArgument("the graph \(file) has no input '\(name)' (inputs: \(inputs.map(\.name).joined(separator: ", ")))")
        }
        // Named dimensions stay symbolic while recording (their sizes are in the graph's bindings), so a
        // disagreement can say where each size came from.
        func irShape(_ s: Shape) -> [Int] { (s.batch ? batch : []) + s.dims.map(\.ir) }
        var values: [String: Value] = [:]
        // Each value's shape as the file declares it, for messages ("[..., hidden=64]").
        var declared: [String: Shape] = [:]
        for input in inputs {
            values[input.name] = g.input(input.name, shape: irShape(input.shape), element: input.element)
            declared[input.name] = input.shape
        }
        var layers: [String: QuantizedLinear] = [:]
        let lora = options.adapter?.modules ?? [:]
        let parser = GraphFileParser(file: file)
        for op in ops {
            let xs = op.inputs.map { values[$0]! }
            let neededBy = "\(op.path) of \(file)"
            func at(_ field: String) -> String { parser.locate(op.path, field) }
            /// Binds `dim` to a size a tensor gives, or reports the disagreement at `field`.
            func bind(_ dim: Int, _ size: Int, _ field: String, _ source: String) throws {
                if let disagreement = g.bindDimension(dim, size, source: source) { throw mismatch(at(field), disagreement) }
            }
            /// A dimension the op needs as a number (a layer's size without weights); `sources` says
            /// what could give it one.
            func size(_ dim: Int, _ field: String, sources: String = "--weights, an input of that shape,") throws -> Int {
                let n = g.resolveDimension(dim)
                guard n >= 0 else {
                    let name = SymbolicDimension.describe(dim)
                    throw mismatch(at(field), "dimension '\(name)' has no value: pass \(sources) or --dim \(name)=N")
                }
                return n
            }
            /// An attribute's number: given, or a constant of the model's config.
            func constant(_ c: Constant, _ field: String) throws -> Float {
                switch c {
                case let .value(v): return v
                case let .model(name):
                    guard let config = weights?.modelConfig else {
                        throw mismatch(at(field), "\"\(name)\" is a constant of the model's config.json / GGUF metadata: load the graph with --model")
                    }
                    return name == "rms_norm_eps" ? config.rmsNormEps : config.ropeTheta
                }
            }
            /// "[..., hidden=64]": a declared shape with the sizes its names have so far.
            func show(_ s: Shape) -> String {
                let dims = s.dims.map { d -> String in
                    let n = g.resolveDimension(d.ir)
                    if case let .named(name) = d, n >= 0 { return "\(name)=\(n)" }
                    return d.description
                }
                return "[" + ((s.batch ? ["..."] : []) + dims).joined(separator: ", ") + "]"
            }
            let y: Value
            do {
                switch op.kind {
                case let .linear(module, out, rule):
                    let inDim = xs[0].shape.last!
                    if let weights {
                        let name = "\(module).weight"
                        let w = try weights.shape(name, neededBy: neededBy)
                        guard w.count == 2 else { throw mismatch(at(".module"), "\(name) in \(weights.path) has shape \(w), expected [out, in]") }
                        let source = "\(name) \(w) [out, in] in \(weights.path)"
                        try bind(inDim, w[1], ".inputs[0]", source)
                        if let out { try bind(out.ir, w[0], ".out", source) }
                    } else if out == nil {
                        throw mismatch(at(".out"), "without --weights a linear needs \"out\" (its output features)")
                    }
                    let layer = try layers[module] ?? makeLayer(module, inFeatures: weights == nil ? size(inDim, ".inputs[0]") : 0,
                                                                 outFeatures: weights == nil ? size(out!.ir, ".out", sources: "--weights") : 0, bias: rule,
                                                                 weights: weights, lora: lora[module], fresh: options.freshLora, seed: options.seed &+ UInt64(layers.count),
                                                                 neededBy: neededBy, parameterLock: parameterLock)
                    if let dropout = options.dropout, layers[module] == nil,
                       options.dropoutTargets.map({ LoraAdapterConfig.matches(module, targets: $0) }) ?? true {
                        layer.dropout = dropout
                    }
                    layers[module] = layer
                    y = try layer(xs[0])
                    let x = declared[op.inputs[0]]!
                    declared[op.output] = Shape(batch: x.batch, dims: x.dims.dropLast() + [out ?? .fixed(layer.outFeatures)])
                case let .primitive(name, attributes):
                    let fields = GraphFileFields(json: attributes, parser: parser, path: at)
                    do {
                        y = try g.record(OpRegistry.graphFileOp(name)!.make(fields), xs, op.output)
                    } catch QLoraError.shapeMismatch where xs.count == 2 {
                        // Said with the shapes as the file declares them.
                        let a = declared[op.inputs[0]]!, b = declared[op.inputs[1]]!
                        let isRow = name == "add" && b.dims.count == 1 && !b.batch && (a.dims.count > 1 || a.batch)
                        throw mismatch(at(".inputs[1]"), isRow
                            ? "\(name) of '\(op.inputs[0])' \(show(a)) and the row '\(op.inputs[1])' \(show(b)) needs the row as long as the last dimension"
                            : "\(name) needs equal shapes, but '\(op.inputs[0])' is \(show(a)) and '\(op.inputs[1])' is \(show(b))")
                    }
                    declared[op.output] = declared[op.inputs[0]]
                case let .reshape(target):
                    y = try g.reshape(xs[0], to: irShape(target), label: op.output)
                    declared[op.output] = target
                case let .rmsNorm(weight, epsConstant):
                    let eps = try constant(epsConstant, ".eps")
                    let width = xs[0].shape.last!
                    let w: Tensor
                    if let weights {
                        w = try weights.tensor(weight, neededBy: neededBy)
                        guard w.rank == 1 else { throw mismatch(at(".weight"), "\(weight) in \(weights.path) has shape \(w.shape), expected 1-D") }
                        try bind(width, w.shape[0], ".inputs[0]", "\(weight) \(w.shape) in \(weights.path)")
                    } else {
                        let n = try size(width, ".inputs[0]")
                        w = try Tensor(shape: [n], scalars: [Float](repeating: 1, count: n))
                    }
                    let p = try parameters[weight] ?? ParameterStorage(name: weight, tensor: w, trainable: false, lock: parameterLock)
                    parameters[weight] = p
                    y = try g.rmsNorm(xs[0], weight: g.parameter(p), eps: eps, label: op.output)
                    declared[op.output] = declared[op.inputs[0]]
                case let .embedding(weight):
                    guard let weights else { throw mismatch(at(".weight"), "an embedding reads its table from --weights or --model") }
                    let table = try parameter(weight, weights: weights, neededBy: neededBy)
                    guard table.shape.count == 2 else { throw mismatch(at(".weight"), "\(weight) in \(weights.path) has shape \(table.shape), expected [vocab, dim]") }
                    y = try g.embedding(xs[0], table: g.parameter(table), label: op.output)
                    let ids = declared[op.inputs[0]]!
                    declared[op.output] = Shape(batch: ids.batch, dims: ids.dims + [.fixed(table.shape[1])])
                case let .dense(weight, fallback):
                    guard let weights else { throw mismatch(at(".weight"), "a dense op reads its weight from --weights or --model") }
                    // A model's config decides tying (transformers uses the embeddings when tied, even if lm_head.weight is saved).
                    let candidates = weights.modelConfig.map { $0.tieWordEmbeddings ? [fallback ?? weight] : [weight] } ?? [weight, fallback].compactMap { $0 }
                    guard let name = candidates.first(where: weights.contains) else { throw weights.missingTensor(candidates[0], neededBy: neededBy) }
                    let w = try parameter(name, weights: weights, neededBy: neededBy)
                    guard w.shape.count == 2 else { throw mismatch(at(".weight"), "\(name) in \(weights.path) has shape \(w.shape), expected [out, in]") }
                    try bind(xs[0].shape.last!, w.shape[1], ".inputs[0]", "\(name) \(w.shape) [out, in] in \(weights.path)")
                    y = try g.matmul(xs[0], g.parameter(w), label: op.output)
                    let x = declared[op.inputs[0]]!
                    declared[op.output] = Shape(batch: x.batch, dims: x.dims.dropLast() + [.fixed(w.shape[0])])
                case let .rope(heads, headDim, theta):
                    let sources = "--model or --dim"
                    let value = try constant(theta, ".theta")
                    let scaling = theta == .model("rope_theta") ? weights?.modelConfig?.ropeScaling ?? .none : .none
                    y = try g.rope(xs[0], heads: try size(heads.ir, ".heads", sources: sources), headDim: try size(headDim.ir, ".head_dim", sources: sources),
                                   theta: value, scaling: scaling, label: op.output)
                    declared[op.output] = declared[op.inputs[0]]
                case let .attention(heads, kvHeads, headDim):
                    let sources = "--model or --dim"
                    y = try g.attention(q: xs[0], k: xs[1], v: xs[2], heads: try size(heads.ir, ".heads", sources: sources),
                                        kvHeads: try size(kvHeads.ir, ".kv_heads", sources: sources),
                                        headDim: try size(headDim.ir, ".head_dim", sources: sources), label: op.output)
                    declared[op.output] = declared[op.inputs[0]]
                }
            } catch let e as QLoraError {
                switch e {
                case .malformedFile, .missingTensor, .graphMismatch: throw e
                default: throw mismatch(op.path, e.description)
                }
            }
            values[op.output] = y
        }
        // Every dimension must have a size now; an input's shape names what is missing.
        for input in inputs {
            for (i, d) in input.shape.dims.enumerated() where g.resolveDimension(d.ir) < 0 {
                throw mismatch("\(input.path).shape[\(i + (input.shape.batch ? 1 : 0))]",
                                 "dimension '\(d)' has no value: pass --weights, an input of that shape, or --dim \(d)=N")
            }
        }
        g.substituteBoundDimensions()
        if let unsized = g.snapshot.nodes.first(where: { !$0.type.shape.isConcrete }) {
            let name = unsized.type.shape.first { $0 < 0 }.map(SymbolicDimension.describe) ?? "?"
            throw QLoraError.invalidArgument("the graph \(file): dimension '\(name)' of '\(unsized.label)' has no value: use --dim \(name)=N")
        }
        for o in outputs { g.output(o.name, values[o.value]!) }
        var notes: [String] = []
        for module in lora.keys.sorted() where layers[module] == nil {
            notes.append("adapter has weights for '\(module)', which the graph \(name) does not use; ignored")
        }
        let concreteInputs = inputs.map { (name: $0.name, shape: g.snapshot.nodes[values[$0.name]!.id].type.shape) }
        return LoadedGraph(definition: self, graph: g, dims: self.dims.merging(g.dimensions.sizesByName) { file, _ in file },
                           inputs: concreteInputs, layers: layers, notes: notes)
    }

    /// A valid graph that does not fit the checkpoint, inputs or --dim values it is used with.
    func mismatch(_ field: String, _ reason: String) -> QLoraError { .graphMismatch(graph: file, field: field, reason: reason) }
}
