import Foundation

extension GraphDefinition {
    /// The format name and the only version this build reads.
    public static let formatName = "qlora-graph"
    public static let formatVersion = 1

    /// Reads and validates a graph file. `dims` overrides the file's `dims` defaults (and sets the
    /// `count` of a `repeat` that names a dimension). Every error names the file and the JSON path.
    public static func load(url: URL, dims: [String: Int] = [:]) throws -> GraphDefinition {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            let exists = FileManager.default.fileExists(atPath: url.path)
            throw QLoraError.io(file: url.path, reason: exists ? "cannot read the file" : "no such file")
        }
        return try parse([UInt8](data), file: url.path, dims: dims)
    }

    /// Parses a graph file's bytes; `file` names it in errors.
    public static func parse(_ bytes: [UInt8], file: String, dims: [String: Int] = [:]) throws -> GraphDefinition {
        let json = try JSONValue.parse(bytes, file: file, field: "$")
        var p = GraphFileParser(file: file)
        return try p.definition(json, overrides: dims)
    }
}

/// The parser behind `GraphDefinition.parse`: strict (unknown keys are errors, so typos are caught).
struct GraphFileParser {
    let file: String

    func bad(_ path: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: path, reason: reason) }

    func object(_ v: JSONValue, _ path: String, allowed: Set<String>, required: [String]) throws -> JSONValue {
        guard case let .object(members) = v else { throw bad(path, "expected an object, got \(v.kind)") }
        for m in members where !allowed.contains(m.key) {
            throw bad("\(path).\(m.key)", "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
        for key in required where v[key] == nil { throw bad("\(path).\(key)", "missing") }
        return v
    }

    func string(_ v: JSONValue?, _ path: String) throws -> String {
        guard case let .string(s)? = v else { throw bad(path, "expected a string, got \(v?.kind ?? "nothing")") }
        guard !s.isEmpty else { throw bad(path, "must not be empty") }
        return s
    }

    func int(_ v: JSONValue?, _ path: String) throws -> Int {
        guard case let .int(n)? = v else { throw bad(path, "expected an integer, got \(v?.kind ?? "nothing")") }
        return n
    }

    func float(_ v: JSONValue?, _ path: String) throws -> Float {
        guard let d = v?.doubleValue, Float(d).isFinite else { throw bad(path, "expected a finite number, got \(v?.kind ?? "nothing")") }
        return Float(d)
    }

    /// A positive number, or one of `names` (a constant of the model's config).
    func constant(_ v: JSONValue?, _ path: String, names: [String]) throws -> GraphDefinition.Constant {
        if case let .string(s)? = v {
            guard names.contains(s) else { throw bad(path, "expected a number or \(names.map { "\"\($0)\"" }.joined(separator: " or ")), got \"\(s)\"") }
            return .model(s)
        }
        let x = try float(v, path)
        guard x > 0 else { throw bad(path, "must be > 0, got \(x)") }
        return .value(x)
    }

    func array(_ v: JSONValue?, _ path: String) throws -> [JSONValue] {
        guard case let .array(items)? = v else { throw bad(path, "expected an array, got \(v?.kind ?? "nothing")") }
        return items
    }

    /// A dimension: a positive integer or a name (letters, digits, '_', not starting with a digit).
    func dim(_ v: JSONValue, _ path: String) throws -> GraphDefinition.Dim {
        switch v {
        case let .int(n):
            guard n > 0 else { throw bad(path, "a dimension must be > 0, got \(n)") }
            return .fixed(n)
        case let .string(s):
            guard GraphFileParser.isIdentifier(s) else {
                throw bad(path, "a dimension name must be an identifier (letters, digits, _), got \"\(s)\"")
            }
            return .named(s)
        default:
            throw bad(path, "a dimension must be an integer or a name, got \(v.kind)")
        }
    }

    static func isIdentifier(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, !CharacterSet.decimalDigits.contains(first) else { return false }
        return s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" } && s.unicodeScalars.allSatisfy(\.isASCII)
    }

    func shape(_ v: JSONValue?, _ path: String) throws -> GraphDefinition.Shape {
        let items = try array(v, path)
        var shape = GraphDefinition.Shape(batch: false, dims: [])
        for (i, item) in items.enumerated() {
            if case .string("...") = item {
                guard i == 0 else { throw bad("\(path)[\(i)]", "\"...\" may only be the first dimension") }
                shape.batch = true
            } else {
                shape.dims.append(try dim(item, "\(path)[\(i)]"))
            }
        }
        guard !shape.dims.isEmpty else { throw bad(path, "needs at least one dimension besides \"...\"") }
        return shape
    }

    mutating func definition(_ json: JSONValue, overrides: [String: Int]) throws -> GraphDefinition {
        let root = try object(json, "$", allowed: ["format", "version", "name", "description", "dims", "inputs", "ops", "outputs"],
                              required: ["format", "version", "inputs", "ops", "outputs"])
        let format = try string(root["format"], "$.format")
        guard format == GraphDefinition.formatName else {
            throw bad("$.format", "expected \"\(GraphDefinition.formatName)\", got \"\(format)\"")
        }
        let version = try int(root["version"], "$.version")
        guard version == GraphDefinition.formatVersion else {
            throw bad("$.version", "this build reads version \(GraphDefinition.formatVersion), got \(version)")
        }
        let name = root["name"] == nil ? URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
                                       : try string(root["name"], "$.name")
        let description = root["description"] == nil ? "" : try string(root["description"], "$.description")
        var dims: [String: Int] = [:]
        if let d = root["dims"] {
            guard case let .object(members) = d else { throw bad("$.dims", "expected an object, got \(d.kind)") }
            for m in members {
                guard GraphFileParser.isIdentifier(m.key) else { throw bad("$.dims.\(m.key)", "not a dimension name") }
                let n = try int(m.value, "$.dims.\(m.key)")
                guard n > 0 else { throw bad("$.dims.\(m.key)", "must be > 0, got \(n)") }
                dims[m.key] = n
            }
        }
        dims.merge(overrides) { _, new in new }

        var inputs: [GraphDefinition.Input] = []
        for (i, item) in try array(root["inputs"], "$.inputs").enumerated() {
            let path = "$.inputs[\(i)]"
            let o = try object(item, path, allowed: ["name", "shape", "dtype"], required: ["name", "shape"])
            var input = GraphDefinition.Input(name: try string(o["name"], "\(path).name"), shape: try shape(o["shape"], "\(path).shape"),
                                              path: path)
            if o["dtype"] != nil {
                let t = try string(o["dtype"], "\(path).dtype")
                guard t == "float32" || t == "int32" else { throw bad("\(path).dtype", "expected \"float32\" or \"int32\", got \"\(t)\"") }
                input.element = t == "int32" ? .int32 : .float32
            }
            if inputs.contains(where: { $0.name == input.name }) { throw bad("\(path).name", "input \"\(input.name)\" declared twice") }
            inputs.append(input)
        }
        guard !inputs.isEmpty else { throw bad("$.inputs", "a graph needs at least one input") }

        var ops: [GraphDefinition.OpDef] = []
        for (i, item) in try array(root["ops"], "$.ops").enumerated() {
            let path = "$.ops[\(i)]"
            if case .object = item, item["repeat"] != nil {
                ops += try repeatBlock(item, path, dims: dims)
            } else {
                ops.append(try op(item, path, substitute: { $0 }, suffix: ""))
            }
        }

        var outputs: [GraphDefinition.Output] = []
        for (i, item) in try array(root["outputs"], "$.outputs").enumerated() {
            let path = "$.outputs[\(i)]"
            let o = try object(item, path, allowed: ["name", "value"], required: ["name"])
            let outName = try string(o["name"], "\(path).name")
            let value = o["value"] == nil ? outName : try string(o["value"], "\(path).value")
            if outputs.contains(where: { $0.name == outName }) { throw bad("\(path).name", "output \"\(outName)\" declared twice") }
            outputs.append(.init(name: outName, value: value, path: path))
        }
        guard !outputs.isEmpty else { throw bad("$.outputs", "a graph needs at least one output") }

        let def = GraphDefinition(name: name, description: description, dims: dims, inputs: inputs, ops: ops, outputs: outputs, file: file)
        try checkNames(def)
        return def
    }

    /// Every op input is defined before it is used; no value is defined twice; outputs exist.
    func checkNames(_ def: GraphDefinition) throws {
        var defined = Set(def.inputs.map(\.name))
        for op in def.ops {
            for (j, name) in op.inputs.enumerated() where !defined.contains(name) {
                throw bad(locate(op.path, ".inputs[\(j)]"), "value \"\(name)\" is not defined by an input or an earlier op")
            }
            guard !defined.contains(op.output) else {
                throw bad(locate(op.path, ".output"), "value \"\(op.output)\" is already defined")
            }
            defined.insert(op.output)
        }
        for o in def.outputs where !defined.contains(o.value) {
            throw bad("\(o.path).value", "value \"\(o.value)\" is not defined by an input or an op")
        }
    }

    /// Appends a sub-field to an op path that may end with a repeat annotation " (i=2)".
    func locate(_ opPath: String, _ field: String) -> String {
        guard let space = opPath.firstIndex(of: " ") else { return opPath + field }
        return String(opPath[..<space]) + field + String(opPath[space...])
    }

    mutating func op(_ v: JSONValue, _ path: String, substitute: (String) -> String, suffix: String) throws -> GraphDefinition.OpDef {
        let common: Set<String> = ["op", "inputs", "output"]
        func at(_ field: String) -> String { path + field + suffix }
        guard case .object = v else { throw bad(at(""), "expected an object, got \(v.kind)") }
        let kindName = try string(v["op"], at(".op"))
        let kind: GraphDefinition.Kind
        func obj(_ extra: Set<String>, _ required: [String]) throws {
            _ = try object(v, at(""), allowed: common.union(extra), required: ["op", "inputs", "output"] + required)
        }
        switch kindName {
        case "linear":
            try obj(["module", "out", "bias"], ["module"])
            let module = substitute(try string(v["module"], at(".module")))
            let out = try v["out"].map { try dim($0, at(".out")) }
            var rule = GraphDefinition.BiasRule.auto
            if let b = v["bias"] {
                let s = try string(b, at(".bias"))
                guard let r = GraphDefinition.BiasRule(rawValue: s) else {
                    throw bad(at(".bias"), "expected \"auto\", \"required\" or \"none\", got \"\(s)\"")
                }
                rule = r
            }
            kind = .linear(module: module, out: out, bias: rule)
        case "rms_norm":
            try obj(["weight", "eps"], ["weight"])
            let eps = v["eps"] == nil ? .value(1e-6) : try constant(v["eps"], at(".eps"), names: ["rms_norm_eps"])
            kind = .rmsNorm(weight: substitute(try string(v["weight"], at(".weight"))), eps: eps)
        case "embedding":
            try obj(["weight"], ["weight"])
            kind = .embedding(weight: substitute(try string(v["weight"], at(".weight"))))
        case "dense":
            try obj(["weight", "fallback"], ["weight"])
            kind = .dense(weight: substitute(try string(v["weight"], at(".weight"))),
                          fallback: try v["fallback"].map { substitute(try string($0, at(".fallback"))) })
        case "rope":
            try obj(["heads", "head_dim", "theta"], ["heads", "head_dim", "theta"])
            kind = .rope(heads: try dim(v["heads"]!, at(".heads")), headDim: try dim(v["head_dim"]!, at(".head_dim")),
                         theta: try constant(v["theta"], at(".theta"), names: ["rope_theta"]))
        case "attention":
            try obj(["heads", "kv_heads", "head_dim"], ["heads", "kv_heads", "head_dim"])
            kind = .attention(heads: try dim(v["heads"]!, at(".heads")), kvHeads: try dim(v["kv_heads"]!, at(".kv_heads")),
                              headDim: try dim(v["head_dim"]!, at(".head_dim")))
        case "reshape":
            try obj(["shape"], ["shape"])
            kind = .reshape(try shape(v["shape"], at(".shape")))
        default:
            guard let spelling = OpRegistry.graphFileOp(kindName) else {
                let known = ["linear"] + OpRegistry.graphFileOps.map(\.name) + ["rms_norm", "reshape", "embedding", "dense", "rope", "attention"]
                throw bad(at(".op"), "unknown op \"\(kindName)\" (known: \(known.joined(separator: ", ")), or a repeat block)")
            }
            try obj(spelling.keys, spelling.required)
            let attributes = JSONValue.object(v.keys.filter(spelling.keys.contains).map { ($0, v[$0]!) })
            _ = try spelling.make(GraphFileFields(json: attributes, parser: self, path: at))   // reports bad values now, with their path
            kind = .primitive(name: kindName, attributes: attributes)
        }
        let items = try array(v["inputs"], at(".inputs"))
        guard items.count == kind.arity else {
            throw bad(at(".inputs"), "\(kindName) takes \(kind.arity) input\(kind.arity == 1 ? "" : "s"), got \(items.count)")
        }
        let inputs = try items.enumerated().map { substitute(try string($1, at(".inputs[\($0)]"))) }
        return .init(kind: kind, inputs: inputs, output: substitute(try string(v["output"], at(".output"))), path: path + suffix)
    }

    /// `{"repeat": {"count", "index", "start", "input", "output", "ops"}}`: the ops are repeated `count`
    /// times; in their strings "{index}" becomes the iteration number (from `start`), "$in" the value
    /// carried in (`input` first, then the previous iteration's "$out") and "$out" the value carried out
    /// (named `output` after the last iteration).
    mutating func repeatBlock(_ v: JSONValue, _ outer: String, dims: [String: Int]) throws -> [GraphDefinition.OpDef] {
        _ = try object(v, outer, allowed: ["repeat"], required: ["repeat"])
        let path = "\(outer).repeat"
        let r = try object(v["repeat"]!, path, allowed: ["count", "index", "start", "input", "output", "ops"],
                           required: ["count", "input", "output", "ops"])
        let count: Int
        switch r["count"]! {
        case let .int(n): count = n
        case let .string(s):
            guard let n = dims[s] else { throw bad("\(path).count", "dimension \"\(s)\" has no value: set it in \"dims\" or with --dim \(s)=N") }
            count = n
        default: throw bad("\(path).count", "expected an integer or a dimension name, got \(r["count"]!.kind)")
        }
        guard count >= 1 else { throw bad("\(path).count", "must be >= 1, got \(count)") }
        let index = r["index"] == nil ? "i" : try string(r["index"], "\(path).index")
        let start = r["start"] == nil ? 0 : try int(r["start"], "\(path).start")
        let input = try string(r["input"], "\(path).input")
        let output = try string(r["output"], "\(path).output")
        let body = try array(r["ops"], "\(path).ops")
        guard !body.isEmpty else { throw bad("\(path).ops", "a repeat needs at least one op") }
        var ops: [GraphDefinition.OpDef] = []
        var carried = input
        for k in 0..<count {
            let n = start + k
            let out = k == count - 1 ? output : "\(output)@\(n)"
            let inValue = carried
            let substitute = { (s: String) -> String in
                if s == "$in" { return inValue }
                if s == "$out" { return out }
                return s.replacingOccurrences(of: "{\(index)}", with: String(n))
            }
            for (j, item) in body.enumerated() {
                if case .object = item, item["repeat"] != nil { throw bad("\(path).ops[\(j)]", "repeat blocks do not nest") }
                ops.append(try op(item, "\(path).ops[\(j)]", substitute: substitute, suffix: " (\(index)=\(n))"))
            }
            guard ops.last?.output == out else {
                throw bad("\(path).ops[\(body.count - 1)].output", "the last op of a repeat must write \"$out\"")
            }
            carried = out
        }
        return ops
    }
}
