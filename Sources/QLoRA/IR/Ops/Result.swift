/// Result k (k ≥ 1) of a node with several results: an alias of that part of the node's buffer,
/// so no step runs. `Graph` records one after such a node for each result past the first.
struct ResultOp: OpDefinition {
    var index: Int
    var name: String { "result" }
    var isAlias: Bool { true }
    var aliasedResult: Int { index }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("index", .int(index))] }
    var bracketAttributes: String { "[\(index)]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let extras = site.operandExtras[0]
        guard index >= 1, index <= extras.count else {
            throw site.invalid("result \(index) of an operand with \(extras.count + 1) result\(extras.isEmpty ? "" : "s")")
        }
        return extras[index - 1]
    }

    func lower(_ input: LoweringInput) -> LoweredStep? { nil }
}
