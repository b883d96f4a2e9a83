/// A pattern over the IR, matched at a node (tinygrad's pattern matcher in miniature): a node
/// whose op definition passes a test, with a pattern for each operand; or any value. Names bind
/// node ids; a name used twice must bind the same node (`x` feeding both the base and the LoRA
/// matmul).
indirect enum Pattern: Sendable {
    /// Any value, bound to `name`.
    case value(String)
    /// A node whose op passes `test`, with exactly these operands (nil: any operands, unmatched).
    /// Unless `shared`, a matched inner node is absorbed by the rewrite, so it must have no other use.
    case node(String, test: @Sendable (Op) -> Bool, operands: [Pattern]?, shared: Bool)

    /// A node whose definition is a `T` passing `test`.
    static func op<T: OpDefinition>(_ type: T.Type, _ name: String, _ operands: Pattern..., shared: Bool = false,
                                    where test: @escaping @Sendable (T) -> Bool = { _ in true }) -> Pattern {
        .node(name, test: { op in op.as(T.self).map(test) ?? false }, operands: operands, shared: shared)
    }

    /// A node whose definition is a `T` passing `test`, whatever its operands.
    static func op<T: OpDefinition>(_ type: T.Type, _ name: String, anyOperands: Void,
                                    where test: @escaping @Sendable (T) -> Bool = { _ in true }) -> Pattern {
        .node(name, test: { op in op.as(T.self).map(test) ?? false }, operands: nil, shared: false)
    }
}

/// What a pattern matched: the bound node ids and the inner nodes the rewrite absorbs.
struct PatternMatch {
    let graph: IRGraph
    private(set) var bindings: [String: Int] = [:]
    private(set) var absorbed: [Int] = []

    init(graph: IRGraph) { self.graph = graph }

    subscript(_ name: String) -> Int { bindings[name]! }
    func node(_ name: String) -> Node { graph.nodes[self[name]] }
    func has(_ name: String) -> Bool { bindings[name] != nil }

    /// Matches `pattern` at node `id`; `uses` are the current use counts. With `commutative`, the
    /// root's two operands may match in either order.
    static func match(_ pattern: Pattern, at id: Int, in g: IRGraph, uses: [Int], commutative: Bool) -> PatternMatch? {
        var m = PatternMatch(graph: g)
        if m.match(pattern, id, uses, root: true, swapped: false) { return m }
        guard commutative else { return nil }
        m = PatternMatch(graph: g)
        return m.match(pattern, id, uses, root: true, swapped: true) ? m : nil
    }

    private mutating func bind(_ name: String, _ id: Int) -> Bool {
        if let bound = bindings[name] { return bound == id }
        bindings[name] = id
        return true
    }

    private mutating func match(_ pattern: Pattern, _ id: Int, _ uses: [Int], root: Bool, swapped: Bool) -> Bool {
        switch pattern {
        case let .value(name):
            return bind(name, id)
        case let .node(name, test, operands, shared):
            let n = graph.nodes[id]
            guard test(n.op), operands == nil || n.operands.count == operands!.count else { return false }
            if !root && !shared {
                guard uses[id] == 1 else { return false }
                absorbed.append(id)
            }
            guard bind(name, id) else { return false }
            guard let operands else { return true }
            let actual = swapped && n.operands.count == 2 ? n.operands.reversed() : n.operands
            return zip(operands, actual).allSatisfy { match($0, $1, uses, root: false, swapped: false) }
        }
    }
}
