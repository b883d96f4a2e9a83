/// How an op is written in graph files (docs/graph-format.md): `{"op": name, "inputs": [...],
/// "output": ..., <attributes>}`. The graph-file parser, `DimensionResolver` and loader read ops
/// through this, so an op with a spelling needs no edit to any of them.
struct GraphFileSpelling: Sendable {
    /// How many inputs the op takes.
    var arity: Int
    /// Attribute keys besides "op", "inputs" and "output", and which of them must be present.
    var keys: Set<String> = []
    var required: [String] = []
    /// How the result's declared shape follows from the operands' (for `DimensionResolver`).
    var shapeRule: SymbolicShapeRule
    /// Builds the op from its attributes (unknown and missing keys are already reported).
    var make: @Sendable (GraphFileFields) throws -> Op
}

/// The shape relation a graph-file op imposes on named dimensions.
enum SymbolicShapeRule: Sendable {
    /// The result has the first operand's shape.
    case sameAsFirst
    /// All operands have the result's shape; with `rowBroadcast`, the second may instead be a 1-D
    /// row of the first's last dimension.
    case operandsAgree(rowBroadcast: Bool)
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
