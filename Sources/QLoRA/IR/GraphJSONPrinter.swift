/// The IR as plain data: what `qlora dump --format json` writes and what parsing that JSON gives
/// back (`IRDump.decode`), so the dump round-trips exactly.
///
///     {"format": "qlora-ir", "version": 1, "stage": "optimized",
///      "nodes": [{"id": 0, "op": "input", "attributes": {"name": "x"}, "operands": [],
///                 "element": "float32", "shape": [3, 64], "label": "x"}, ...],
///      "inputs": [{"name": "x", "node": 0}], "outputs": [{"name": "y", "node": 9}]}
public struct IRDump: Equatable, Sendable {
    public struct NodeRecord: Equatable, Sendable {
        public var id: Int
        public var op: String
        /// Op attributes (scale factor, weight name and quant type, fused ops, ...), an object.
        public var attributes: JSONValue
        public var operands: [Int]
        public var element: ElementType
        public var shape: [Int]
        public var label: String
        /// The types of the results after the first, for ops with several (the JSON key
        /// "extra_results" appears only then).
        public var extraResults: [ValueType] = []
    }

    public struct Binding: Equatable, Sendable {
        public var name: String
        public var node: Int
    }

    public var stage: String
    public var nodes: [NodeRecord]
    public var inputs: [Binding]
    public var outputs: [Binding]

    static let format = "qlora-ir"

    init(_ g: IRGraph, stage: String) {
        self.stage = stage
        nodes = g.nodes.map { n in
            NodeRecord(id: n.id, op: n.op.name, attributes: .object(IRDump.attributes(n.op)), operands: n.operands,
                       element: n.type.element, shape: n.type.shape, label: n.label, extraResults: n.extraResults)
        }
        inputs = g.inputs.map { Binding(name: $0.name, node: $0.node) }
        outputs = g.outputs.map { Binding(name: $0.name, node: $0.node) }
    }

    static func number(_ f: Float) -> JSONValue { .number(Double(f), text: pythonFloatRepr(Double(f))) }
    static func ints(_ a: [Int]) -> JSONValue { .array(a.map { .int($0) }) }

    static func attributes(_ op: Op) -> [(key: String, value: JSONValue)] { op.definition.jsonAttributes }

    /// A shape with symbolic dimensions written by name.
    static func dims(_ shape: [Int]) -> JSONValue { .array(shape.map { d in SymbolicDimension.name(of: d).map { .string($0) } ?? .int(d) }) }

    /// The dump as a JSON value (`pythonDumps(indent: 2)` gives the file text).
    public var json: JSONValue {
        .object([
            ("format", .string(IRDump.format)), ("version", .int(1)), ("stage", .string(stage)),
            ("nodes", .array(nodes.map { n in
                var fields: [(key: String, value: JSONValue)] = [
                    ("id", .int(n.id)), ("op", .string(n.op)), ("attributes", n.attributes), ("operands", IRDump.ints(n.operands)),
                    ("element", .string(n.element.rawValue)), ("shape", IRDump.dims(n.shape)), ("label", .string(n.label))]
                if !n.extraResults.isEmpty {
                    fields.append(("extra_results", .array(n.extraResults.map {
                        .object([("element", .string($0.element.rawValue)), ("shape", IRDump.dims($0.shape))])
                    })))
                }
                return .object(fields)
            })),
            ("inputs", .array(inputs.map { .object([("name", .string($0.name)), ("node", .int($0.node))]) })),
            ("outputs", .array(outputs.map { .object([("name", .string($0.name)), ("node", .int($0.node))]) })),
        ])
    }

    /// Parses a dump back, checking every field; errors name the JSON path.
    public static func decode(_ v: JSONValue, file: String = "IR dump") throws -> IRDump {
        func bad(_ path: String, _ reason: String) -> QLoraError { .malformedFile(file: file, field: path, reason: reason) }
        func get(_ o: JSONValue, _ key: String, _ path: String) throws -> JSONValue {
            guard let x = o[key] else { throw bad("\(path).\(key)", "missing") }
            return x
        }
        func int(_ x: JSONValue, _ path: String) throws -> Int {
            guard case let .int(n) = x else { throw bad(path, "expected an integer, got \(x.kind)") }
            return n
        }
        func string(_ x: JSONValue, _ path: String) throws -> String {
            guard case let .string(s) = x else { throw bad(path, "expected a string, got \(x.kind)") }
            return s
        }
        func array(_ x: JSONValue, _ path: String) throws -> [JSONValue] {
            guard case let .array(a) = x else { throw bad(path, "expected an array, got \(x.kind)") }
            return a
        }
        func bindings(_ key: String) throws -> [Binding] {
            try array(get(v, key, "$"), "$.\(key)").enumerated().map { i, b in
                Binding(name: try string(get(b, "name", "$.\(key)[\(i)]"), "$.\(key)[\(i)].name"),
                        node: try int(get(b, "node", "$.\(key)[\(i)]"), "$.\(key)[\(i)].node"))
            }
        }
        guard try string(get(v, "format", "$"), "$.format") == format else { throw bad("$.format", "expected \"\(format)\"") }
        guard try int(get(v, "version", "$"), "$.version") == 1 else { throw bad("$.version", "expected 1") }
        var dump = IRDump(IRGraph(), stage: try string(get(v, "stage", "$"), "$.stage"))
        func element(_ o: JSONValue, _ p: String) throws -> ElementType {
            let name = try string(get(o, "element", p), "\(p).element")
            guard let element = ElementType(rawValue: name) else { throw bad("\(p).element", "unknown element type \"\(name)\"") }
            return element
        }
        func shape(_ o: JSONValue, _ p: String) throws -> [Int] {
            try array(get(o, "shape", p), "\(p).shape").enumerated().map { i, d in
                if case let .string(name) = d { return SymbolicDimension.named(name) }   // a symbolic dimension
                return try int(d, "\(p).shape[\(i)]")
            }
        }
        for (i, n) in try array(get(v, "nodes", "$"), "$.nodes").enumerated() {
            let p = "$.nodes[\(i)]"
            let attributes = try get(n, "attributes", p)
            guard case .object = attributes else { throw bad("\(p).attributes", "expected an object") }
            dump.nodes.append(NodeRecord(
                id: try int(get(n, "id", p), "\(p).id"), op: try string(get(n, "op", p), "\(p).op"), attributes: attributes,
                operands: try array(get(n, "operands", p), "\(p).operands").enumerated().map { try int($1, "\(p).operands[\($0)]") },
                element: try element(n, p), shape: try shape(n, p),
                label: try string(get(n, "label", p), "\(p).label"),
                extraResults: try (n["extra_results"].map { try array($0, "\(p).extra_results") } ?? []).enumerated().map { k, r in
                    ValueType(shape: try shape(r, "\(p).extra_results[\(k)]"), element: try element(r, "\(p).extra_results[\(k)]"))
                }))
        }
        dump.inputs = try bindings("inputs")
        dump.outputs = try bindings("outputs")
        return dump
    }
}
