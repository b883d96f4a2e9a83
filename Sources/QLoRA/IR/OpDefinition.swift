/// Everything the pipeline knows about one kind of operation, in one place: its name and
/// attributes (as printers and IR dumps show them), its result-type rule, and how it lowers to a
/// runtime step (kernel, cost, scratch). Printers, verification, recording, the scheduler and the
/// executor only ever call these requirements, so a new op is one type conforming to this
/// protocol plus its kernel (docs/architecture.md walks through one).
protocol OpDefinition: Sendable {
    /// Short lower-case name used by printers, IR dumps and graph files.
    var name: String { get }
    /// The attributes for IR dumps, in a fixed order (empty for none).
    var jsonAttributes: [(key: String, value: JSONValue)] { get }
    /// The attributes as the text printer shows them inside brackets, e.g. "[2.0]" (empty for none).
    var bracketAttributes: String { get }
    /// The IR ops a fused node replaced; printers cluster such nodes and plans report them.
    var fusedOps: [String] { get }
    /// For leaves, the data they stand for; computing ops return nil.
    var leaf: LeafData? { get }
    /// True when the result is the first operand's memory seen with another shape (no step runs).
    var isAlias: Bool { get }
    /// For ops that update state in place: the operand (a state leaf) whose buffer the step
    /// writes. Such nodes are kept even when no output reads them.
    var updatesOperand: Int? { get }
    /// An operand whose buffer the result may take over when nothing reads it after this step
    /// (elementwise kernels that read each element before writing it).
    var mayReuseOperand: Int? { get }
    /// The result type for `operands`, or an error worded by `site`.
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType
    /// The types of the results after the first, for ops with several (read through `result` nodes).
    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType]
    /// For aliases: which result of operand 0 the value is (0 for reshape).
    var aliasedResult: Int { get }
    /// The step computing `input.node`; nil for leaves and aliases.
    func lower(_ input: LoweringInput) -> LoweredStep?
    /// The op with its symbolic dimensions replaced by `sizes` (only ops whose attributes hold
    /// dimensions, like reshape, need to implement it).
    func bindingSizes(_ sizes: [String: Int], partially: Bool) throws -> any OpDefinition
    /// Reverse mode (the autodiff pass): given `cotangent`, the node (in `d`'s graph) holding
    /// ∂loss/∂result, records the steps computing ∂loss/∂operand for each operand `d.wants`, and
    /// returns their node ids (nil for operands that need none).
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?]
}

extension OpDefinition {
    var jsonAttributes: [(key: String, value: JSONValue)] { [] }
    var bracketAttributes: String { "" }
    var fusedOps: [String] { [] }
    var leaf: LeafData? { nil }
    var isAlias: Bool { false }
    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] { [] }
    var aliasedResult: Int { 0 }
    var updatesOperand: Int? { nil }
    var mayReuseOperand: Int? { nil }
    func bindingSizes(_ sizes: [String: Int], partially: Bool) throws -> any OpDefinition { self }
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        throw QLoraError.invalidArgument("\(name) '\(node.label)': no gradient flows through this op")
    }
}

/// The data a leaf node stands for. Leaves are never executed; the memory planner gives each kind
/// its place (the caller's arrays, parameter storage, 4-bit weights, cached f32 copies).
enum LeafData {
    case input(name: String)
    case parameter(ParameterStorage)
    case quantizedWeight(QuantizedWeightStorage)
    case cachedWeight(QuantizedWeightStorage)
    /// A persistent buffer that steps update in place (accumulators, optimizer moments, caches).
    case state(StateStorage)
}

/// One operation of the IR: a definition value (with its attributes). Cheap to copy.
public struct Op: Sendable {
    let definition: any OpDefinition

    init(_ definition: any OpDefinition) { self.definition = definition }

    /// Short lower-case name used by printers and the JSON graph format.
    public var name: String { definition.name }

    /// Leaves hold data and are never executed as steps.
    var isLeaf: Bool { definition.leaf != nil }
    var leaf: LeafData? { definition.leaf }

    /// The definition when it is a `T` (how passes recognise ops).
    func `as`<T: OpDefinition>(_ type: T.Type) -> T? { definition as? T }
    func `is`<T: OpDefinition>(_ type: T.Type) -> Bool { definition is T }

    /// The result types (the first and any others) for operands of these types; `operandExtras`
    /// are each operand's results after its first.
    /// `dimensions`: the recording graph's symbol sizes (nil: dimensions must simply be equal).
    func resultTypes(_ operands: [ValueType], operandExtras: [[ValueType]], label: String,
                     dimensions: DimensionBindings? = nil) throws -> (ValueType, [ValueType]) {
        let site = OpSite(op: name, label: label, operands: operands, operandExtras: operandExtras, dimensions: dimensions)
        return (try definition.resultType(operands, at: site), try definition.extraResultTypes(operands, at: site))
    }
}

/// Where a type rule is applied, for error messages: "add 'sum': rhs ...". Holds the operand
/// types with helpers for the checks every rule makes.
struct OpSite {
    let op: String
    let label: String
    let operands: [ValueType]
    /// Each operand's results after its first (empty for single-result operands).
    let operandExtras: [[ValueType]]
    /// The symbol sizes the recording graph knows; rules compare dimensions through them.
    let dimensions: DimensionBindings?

    var description: String { label.isEmpty ? op : "\(op) '\(label)'" }

    func invalid(_ reason: String) -> QLoraError { .invalidArgument("\(description): \(reason)") }

    func mismatch(_ what: String, expected: [Int], actual: [Int]) -> QLoraError {
        .shapeMismatch(context: "\(description): \(what)", expected: expected, actual: actual)
    }

    /// The size `d` stands for (a bound symbol's size), else `d`.
    func resolve(_ d: Int) -> Int { dimensions?.resolve(d) ?? d }

    /// True when two dimensions are the same; an unbound symbol meeting a size takes it.
    func same(_ a: Int, _ b: Int) -> Bool { dimensions?.unify(a, b) ?? (a == b) }

    /// True when two shapes are the same, dimension by dimension.
    func same(_ a: [Int], _ b: [Int]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { same($0, $1) } }

    func arity(_ n: Int) throws {
        guard operands.count == n else { throw invalid("expects \(n) operands, got \(operands.count)") }
    }

    /// The shape of operand `i`, which must hold f32 values.
    func f32(_ i: Int, _ role: String) throws -> [Int] {
        guard operands[i].element == .float32 else { throw invalid("\(role) must be f32, got \(operands[i])") }
        return operands[i].shape
    }
}
