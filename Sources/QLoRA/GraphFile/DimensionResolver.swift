/// Gives every named dimension of a graph definition a value, from (in this order) `--dim`/`dims`,
/// the shapes of the actual inputs, and the shapes of the weights the ops read. Shapes are followed
/// symbolically through the ops until nothing changes; any disagreement is an error naming the JSON
/// path and both sides. The leading "..." of the inputs (the batch dimensions) comes from the actual
/// inputs, else is `[tokens]`.
struct DimensionResolver {
    typealias Dim = GraphDefinition.Dim
    typealias Shape = GraphDefinition.Shape

    let def: GraphDefinition
    let weights: CheckpointWeights?
    private(set) var values: [String: Int]
    private var origin: [String: String] = [:]
    private(set) var batch: [Int] = []
    private var changed = false

    init(def: GraphDefinition, weights: CheckpointWeights?) {
        self.def = def
        self.weights = weights
        values = def.dims
        for k in def.dims.keys { origin[k] = "--dim or the graph's dims" }
    }

    func bad(_ path: String, _ reason: String) -> QLoraError { .graphMismatch(graph: def.file, field: path, reason: reason) }

    func value(_ d: Dim) -> Int? {
        switch d {
        case let .fixed(n): return n
        case let .named(s): return values[s]
        }
    }

    func show(_ s: Shape) -> String {
        let dims = s.dims.map { d -> String in
            if case let .named(n) = d, let v = values[n] { return "\(n)=\(v)" }
            return d.description
        }
        return "[" + ((s.batch ? ["..."] : []) + dims).joined(separator: ", ") + "]"
    }

    /// Gives `d` the value `n` (or checks it has it); `source` says where `n` comes from.
    mutating func bind(_ d: Dim, _ n: Int, at path: String, source: String) throws {
        switch d {
        case let .fixed(m):
            guard m == n else { throw bad(path, "shape disagreement: the graph says \(m) but \(source) gives \(n)") }
        case let .named(s):
            if let v = values[s] {
                guard v == n else {
                    throw bad(path, "shape disagreement: dimension '\(s)' is \(v) (from \(origin[s] ?? "?")) but \(source) gives \(n)")
                }
            } else {
                values[s] = n
                origin[s] = source
                changed = true
            }
        }
    }

    /// Makes two dimensions equal when one of them is known.
    mutating func unify(_ a: Dim, _ b: Dim, at path: String, what: String) throws {
        if let va = value(a) { try bind(b, va, at: path, source: what) } else if let vb = value(b) { try bind(a, vb, at: path, source: what) }
    }

    /// Resolves everything or throws.
    mutating func resolve(inputShapes: [String: [Int]]) throws {
        try bindInputs(inputShapes)
        for _ in 0...def.ops.count {
            changed = false
            try propagate()
            if !changed { break }
        }
        for input in def.inputs {
            for (i, d) in input.shape.dims.enumerated() where value(d) == nil {
                throw bad("\(input.path).shape[\(i + (input.shape.batch ? 1 : 0))]",
                          "dimension '\(d)' has no value: pass --weights, an input of that shape, or --dim \(d)=N")
            }
        }
    }

    private mutating func bindInputs(_ actual: [String: [Int]]) throws {
        var batchFrom: String?
        for input in def.inputs {
            guard let shape = actual[input.name] else { continue }
            let declared = input.shape
            let fits = declared.batch ? shape.count >= declared.dims.count : shape.count == declared.dims.count
            guard fits else {
                throw bad("\(input.path).shape", "shape disagreement: input '\(input.name)' has shape \(shape) but the graph declares \(declared)")
            }
            let lead = Array(shape.prefix(shape.count - declared.dims.count))
            if declared.batch {
                if let from = batchFrom, lead != batch {
                    throw bad("\(input.path).shape", "input '\(input.name)' has batch dimensions \(lead) but input '\(from)' has \(batch)")
                }
                batch = lead
                batchFrom = input.name
            }
            for (d, n) in zip(declared.dims, shape.suffix(declared.dims.count)) {
                try bind(d, n, at: "\(input.path).shape", source: "input '\(input.name)' of shape \(shape)")
            }
        }
        if batchFrom == nil { batch = [values["tokens"] ?? 1] }
    }

    /// One pass over the ops, binding what the weights and elementwise ops determine.
    private mutating func propagate() throws {
        var shapes: [String: Shape] = [:]
        for input in def.inputs { shapes[input.name] = input.shape }
        for op in def.ops {
            let x = shapes[op.inputs[0]]!
            let parser = GraphFileParser(file: def.file)
            func at(_ field: String) -> String { parser.locate(op.path, field) }
            var out = x
            switch op.kind {
            case let .linear(module, outDim, _):
                if let weights {
                    let name = "\(module).weight"
                    let w = try weights.shape(name, neededBy: "\(op.path) of \(def.file)")
                    guard w.count == 2 else { throw bad(at(".module"), "\(name) in \(weights.path) has shape \(w), expected [out, in]") }
                    let src = "\(name) \(w) [out, in] in \(weights.path)"
                    try bind(x.dims.last!, w[1], at: at(".inputs[0]"), source: src)
                    if let outDim { try bind(outDim, w[0], at: at(".out"), source: src) }
                    out.dims = x.dims.dropLast() + [outDim ?? .fixed(w[0])]
                } else {
                    guard let outDim else { throw bad(at(".out"), "without --weights a linear needs \"out\" (its output features)") }
                    out.dims = x.dims.dropLast() + [outDim]
                }
            case let .rmsNorm(weight, _):
                if let weights {
                    let w = try weights.shape(weight, neededBy: "\(op.path) of \(def.file)")
                    guard w.count == 1 else { throw bad(at(".weight"), "\(weight) in \(weights.path) has shape \(w), expected 1-D") }
                    try bind(x.dims.last!, w[0], at: at(".inputs[0]"), source: "\(weight) \(w) in \(weights.path)")
                }
            case .add, .mul:
                let y = shapes[op.inputs[1]]!
                let isRow: Bool
                if case .add = op.kind { isRow = y.dims.count == 1 && !y.batch && (x.dims.count > 1 || x.batch) } else { isRow = false }
                let name = op.kind.name
                let disagree = bad(at(".inputs[1]"), isRow
                    ? "\(name) of '\(op.inputs[0])' \(show(x)) and the row '\(op.inputs[1])' \(show(y)) needs the row as long as the last dimension"
                    : "\(name) needs equal shapes, but '\(op.inputs[0])' is \(show(x)) and '\(op.inputs[1])' is \(show(y))")
                let pairs = isRow ? [(x.dims.last!, y.dims[0])] : Array(zip(x.dims, y.dims))
                guard isRow || (x.batch == y.batch && x.dims.count == y.dims.count) else { throw disagree }
                for (a, b) in pairs {
                    if let va = value(a), let vb = value(b), va != vb { throw disagree }
                    try unify(a, b, at: at(".inputs[1]"), what: "'\(op.inputs[0])' \(show(x))")
                }
            case .silu, .gelu, .relu, .scale:
                break
            case let .reshape(target):
                out = target
            }
            shapes[op.output] = out
        }
    }

    /// A declared shape with every dimension known.
    func concrete(_ s: Shape, at path: String) throws -> [Int] {
        let dims = try s.dims.enumerated().map { i, d -> Int in
            guard let v = value(d) else { throw bad("\(path)[\(i + (s.batch ? 1 : 0))]", "dimension '\(d)' has no value: use --dim \(d)=N") }
            return v
        }
        return (s.batch ? batch : []) + dims
    }
}
