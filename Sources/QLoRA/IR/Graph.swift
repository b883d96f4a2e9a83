import Foundation

/// A value recorded in a graph: the result of a node. Cheap to copy; knows its graph, so layers
/// called on it record into the same graph.
public struct Value: Sendable {
    public let graph: Graph
    public let id: Int
    public let type: ValueType
    public var shape: [Int] { type.shape }
}

/// A computation recorded, not run: layers and the methods below append nodes; `compile` turns
/// the graph into an `ExecutablePlan`. Recording checks shapes immediately and computes nothing.
public final class Graph: @unchecked Sendable {
    private var ir = IRGraph()
    private let lock = NSLock()
    /// Sizes the recording learned for symbolic dimensions (a symbol meeting a weight's size).
    let dimensions = DimensionBindings()

    public init() {}

    /// A snapshot of the recorded IR for the compiler, with the symbols the recording bound replaced by their sizes.
    var snapshot: IRGraph {
        lock.lock(); defer { lock.unlock() }
        return (try? ir.bindingSizes(dimensions.sizesByName, partially: true)) ?? ir
    }

    public var nodeCount: Int { snapshot.nodes.count }

    /// Declares an input fed to `ExecutablePlan.run` under `name`: f32 values (a `Tensor`), or
    /// int32 ids and labels (`element: .int32`, an `IntTensor`).
    /// A duplicate name, a non-positive dimension or another element type is reported by `compile` (verify pass).
    @discardableResult
    public func input(_ name: String, shape: [Int], element: ElementType = .float32) -> Value {
        lock.lock(); defer { lock.unlock() }
        let id = ir.nodes.count
        let type = ValueType(shape: shape, element: element)
        ir.nodes.append(Node(id: id, op: .input(name: name), operands: [], type: type, label: name))
        ir.inputs.append((name, id))
        return Value(graph: self, id: id, type: type)
    }

    /// Marks `value` as an output returned by `run` under `name`.
    public func output(_ name: String, _ value: Value) {
        lock.lock(); defer { lock.unlock() }
        ir.outputs.append((name, value.id))
    }

    /// The value marked as output `name` (the last one so named), or nil.
    public func output(named name: String) -> Value? {
        lock.lock(); defer { lock.unlock() }
        guard let o = ir.outputs.last(where: { $0.name == name }) else { return nil }
        return Value(graph: self, id: o.node, type: ir.nodes[o.node].type)
    }

    /// The input declared as `name` (e.g. a loaded graph file's `input_ids`, to use as labels), or nil.
    public func input(named name: String) -> Value? {
        lock.lock(); defer { lock.unlock() }
        guard let i = ir.inputs.last(where: { $0.name == name }) else { return nil }
        return Value(graph: self, id: i.node, type: ir.nodes[i.node].type)
    }

    /// Records the backward request (at most one per graph).
    func setBackward(_ request: BackwardRequest) throws {
        lock.lock(); defer { lock.unlock() }
        guard ir.backward == nil else { throw QLoraError.invalidArgument("backward: the graph already has a backward request") }
        ir.backward = request
    }

    /// A full-precision parameter node reading `storage` at run time.
    public func parameter(_ storage: ParameterStorage) -> Value {
        leaf(.parameter(storage), ValueType(shape: storage.shape, element: storage.element), label: storage.name)
    }

    /// A 4-bit weight node.
    public func quantizedWeight(_ storage: QuantizedWeightStorage) -> Value {
        leaf(.quantizedWeight(storage), ValueType(shape: storage.shape, element: .quant4), label: storage.name)
    }

    /// Appends a computing node after checking its operands belong here and their shapes fit.
    func record(_ op: Op, _ operands: [Value], _ label: String) throws -> Value {
        try recordResults(op, operands, label)[0]
    }

    /// Appends a node and, for an op with several results, a `result` node for each one after the
    /// first; returns every result.
    func recordResults(_ op: Op, _ operands: [Value], _ label: String) throws -> [Value] {
        for v in operands where v.graph !== self {
            throw QLoraError.invalidArgument("\(op.name) '\(label)': operand %\(v.id) belongs to another graph")
        }
        lock.lock(); defer { lock.unlock() }   // held while the type rule may bind symbols
        let extras = operands.map { ir.nodes[$0.id].extraResults }
        let (type, extraTypes) = try op.resultTypes(operands.map(\.type), operandExtras: extras, label: label, dimensions: dimensions)
        let id = ir.nodes.count
        ir.nodes.append(Node(id: id, op: op, operands: operands.map(\.id), type: type, label: label, extraResults: extraTypes))
        var values = [Value(graph: self, id: id, type: type)]
        for (k, t) in extraTypes.enumerated() {
            let rid = ir.nodes.count
            ir.nodes.append(Node(id: rid, op: Op(ResultOp(index: k + 1)), operands: [id], type: t, label: label.isEmpty ? "" : "\(label).\(k + 1)"))
            values.append(Value(graph: self, id: rid, type: t))
        }
        return values
    }

    func leaf(_ op: Op, _ type: ValueType, label: String) -> Value {
        lock.lock(); defer { lock.unlock() }
        let id = ir.nodes.count
        ir.nodes.append(Node(id: id, op: op, operands: [], type: type, label: label))
        return Value(graph: self, id: id, type: type)
    }

    /// Gives a symbolic dimension a size from outside the graph (a checkpoint tensor, an input's
    /// shape); `source` names it. Returns nil, or the disagreement with the size it already has.
    func bindDimension(_ dim: Int, _ size: Int, source: String) -> String? {
        lock.lock(); defer { lock.unlock() }
        return dimensions.bind(dim, size, source: source)
    }

    /// The size `dim` stands for so far (an unbound symbol stays itself).
    func resolveDimension(_ dim: Int) -> Int { lock.lock(); defer { lock.unlock() }; return dimensions.resolve(dim) }

    /// True when `a` and `b` are the same dimension (an unbound symbol meeting a size takes it).
    func sameDimension(_ a: Int, _ b: Int) -> Bool { lock.lock(); defer { lock.unlock() }; return dimensions.unify(a, b) }

    /// Rewrites the recorded nodes with the sizes learned so far (a loaded graph file is then concrete).
    func substituteBoundDimensions() {
        lock.lock(); defer { lock.unlock() }
        if let bound = try? ir.bindingSizes(dimensions.sizesByName, partially: true) { ir = bound }
    }

    /// The recorded IR as text, one node per line.
    public var text: String { GraphPrinter.text(snapshot) }
}
