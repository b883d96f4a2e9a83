/// The same elements with another shape: an alias of its operand's memory, so no step runs.
struct ReshapeOp: OpDefinition {
    var shape: [Int]
    var name: String { "reshape" }
    var isAlias: Bool { true }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("shape", IRDump.ints(shape))] }
    var bracketAttributes: String { "[\(shape.map(SymbolicDimension.describe).joined(separator: "x"))]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let a = try site.f32(0, "input")
        guard shape.allSatisfy({ $0 != 0 }), SymbolicProduct(shape.map(site.resolve)) == SymbolicProduct(a.map(site.resolve)) else {
            throw site.mismatch("element count of the new shape", expected: a, actual: shape)
        }
        return ValueType(shape: shape, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? { nil }

    func bindingSizes(_ sizes: [String: Int], partially: Bool) throws -> any OpDefinition {
        ReshapeOp(shape: try shape.map { d in
            partially && SymbolicDimension.name(of: d).map { sizes[$0] == nil } == true ? d : try SymbolicDimension.bind(d, sizes)
        })
    }
}

extension Op {
    static func reshape(_ shape: [Int]) -> Op { Op(ReshapeOp(shape: shape)) }
}

extension Graph {
    public func reshape(_ a: Value, to shape: [Int], label: String = "") throws -> Value { try record(.reshape(shape), [a], label) }
}

extension ReshapeOp {
    /// The cotangent seen with the operand's shape.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        [try d.reshaped(cotangent, to: d.type(node.operands[0]).shape, label: "grad.\(node.label)")]
    }
}
