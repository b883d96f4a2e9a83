/// How an op is written in graph files (docs/graph-format.md): `{"op": name, "inputs": [...],
/// "output": ..., <attributes>}`. The graph-file parser and loader read ops through this, so an op
/// with a spelling needs no edit to either (shapes follow from the op's own type rule).
struct GraphFileSpelling: Sendable {
    /// How many inputs the op takes.
    var arity: Int
    /// Attribute keys besides "op", "inputs" and "output", and which of them must be present.
    var keys: Set<String> = []
    var required: [String] = []
    /// Builds the op from its attributes (unknown and missing keys are already reported).
    var make: @Sendable (GraphFileFields) throws -> Op
}

/// One op's attributes in a graph file, read with errors that name the file and JSON path.
struct GraphFileFields {
    let json: JSONValue
    let parser: GraphFileParser
    /// The JSON path of an attribute (`locate` keeps a repeat annotation at the end).
    let path: (String) -> String

    func float(_ key: String) throws -> Float { try parser.float(json[key], path(".\(key)")) }
    func float(_ key: String, default value: Float) throws -> Float { json[key] == nil ? value : try float(key) }
    func int(_ key: String) throws -> Int { try parser.int(json[key], path(".\(key)")) }
}

/// Every op graph files may name directly (besides the layer-level `linear`, `rms_norm` and
/// `reshape`, which read checkpoint weights or declared shapes), in the order error messages list them.
enum OpRegistry {
    static let graphFileOps: [(name: String, spelling: GraphFileSpelling)] =
        [AddOp.graphFile, MulOp.graphFile] + ActivationOp.graphFiles + [ScaleOp.graphFile, SoftmaxOp.graphFile]

    static func graphFileOp(_ name: String) -> GraphFileSpelling? { graphFileOps.first { $0.name == name }?.spelling }
}
