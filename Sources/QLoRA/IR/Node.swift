/// Shape and element type of a graph value.
public struct ValueType: Sendable, Equatable, CustomStringConvertible {
    public var shape: [Int]
    public var element: ElementType

    public var count: Int { shape.reduce(1, *) }
    /// Bytes of the value in a buffer.
    var byteCount: Int { count * element.byteWidth }
    public var description: String { "\(element.abbreviation)[\(shape.map(SymbolicDimension.describe).joined(separator: "x"))]" }
}

/// A node of the IR: an operation, its operands (ids of earlier nodes) and its result type.
public struct Node: Sendable {
    public var id: Int
    public var op: Op
    public var operands: [Int]
    public var type: ValueType
    /// A human-readable name: the layer or parameter it belongs to (e.g. "proj.lora_A").
    public var label: String
    /// The results after the first, for ops with several; `result` nodes read them.
    public var extraResults: [ValueType] = []

    /// Every result's type, the first one first.
    var results: [ValueType] { [type] + extraResults }

    /// Where each result starts in the node's buffer (results are laid end to end, 64-byte aligned).
    var resultOffsets: [Int] {
        var offsets: [Int] = [], next = 0
        for r in results { offsets.append(next); next += MemoryPlanner.aligned(r.byteCount) }
        return offsets
    }

    /// The bytes of the buffer holding all results.
    var bufferBytes: Int { results.reduce(0) { $0 + MemoryPlanner.aligned($1.byteCount) } }

    /// The type as printers show it: "f32[4x64]", or "(f32[4x64], f32[4])" for several results.
    var typeDescription: String { extraResults.isEmpty ? "\(type)" : "(" + results.map(\.description).joined(separator: ", ") + ")" }
}

/// The IR as the compiler passes see it: a value that each pass reads and rewrites.
/// Node ids equal their index in `nodes`; operands always point to earlier nodes.
struct IRGraph: Sendable {
    var nodes: [Node] = []
    var inputs: [(name: String, node: Int)] = []
    var outputs: [(name: String, node: Int)] = []
    /// What the autodiff pass is asked to add (recorded by `Graph.backward`); nil for inference.
    var backward: BackwardRequest?
    /// After the autodiff pass: nodes before this index are the forward pass and the loss, the
    /// backward follows (gradient checkpointing recomputes forward values for the backward).
    var forwardCount: Int?

    /// How many times each node is used as an operand or output.
    func useCounts() -> [Int] {
        var uses = [Int](repeating: 0, count: nodes.count)
        for n in nodes { for o in n.operands { uses[o] += 1 } }
        for o in outputs { uses[o.node] += 1 }
        return uses
    }

    /// The graph with every symbolic dimension replaced by its size in `sizes`; unless `partially`,
    /// a symbol without a size is an error.
    func bindingSizes(_ sizes: [String: Int], partially: Bool = false) throws -> IRGraph {
        let bind = { (d: Int) throws -> Int in partially && SymbolicDimension.name(of: d).map { sizes[$0] == nil } == true ? d : try SymbolicDimension.bind(d, sizes) }
        for (name, size) in sizes where size <= 0 {
            throw QLoraError.invalidArgument("dimension '\(name)' must be > 0, got \(size)")
        }
        var out = self
        for i in out.nodes.indices {
            out.nodes[i].type.shape = try nodes[i].type.shape.map(bind)
            out.nodes[i].extraResults = try nodes[i].extraResults.map { ValueType(shape: try $0.shape.map(bind), element: $0.element) }
            out.nodes[i].op = Op(try nodes[i].op.definition.bindingSizes(sizes, partially: partially))
        }
        return out
    }

    /// Keeps only the nodes `keep` marks, renumbering ids and operands in order.
    func compacted(keeping keep: [Bool]) -> IRGraph {
        var remap = [Int](repeating: -1, count: nodes.count)
        var out = IRGraph()
        for n in nodes where keep[n.id] {
            var copy = n
            copy.id = out.nodes.count
            copy.operands = n.operands.map { remap[$0] }
            remap[n.id] = copy.id
            out.nodes.append(copy)
        }
        out.inputs = inputs.filter { keep[$0.node] }.map { ($0.name, remap[$0.node]) }
        out.outputs = outputs.map { ($0.name, remap[$0.node]) }
        out.forwardCount = forwardCount.map { count in keep.prefix(count).filter { $0 }.count }
        return out
    }
}
