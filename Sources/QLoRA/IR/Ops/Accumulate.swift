import CQLoRAKernels

/// State: a persistent buffer as a leaf, and `accumulate`, the step that adds into it in place.

/// A persistent, writable buffer (`StateStorage`).
struct StateOp: OpDefinition {
    var storage: StateStorage
    var name: String { "state" }
    var leaf: LeafData? { .state(storage) }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("name", .string(storage.name))] }
    var bracketAttributes: String { "[\(storage.name)]" }
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        throw site.invalid("leaves have no operands to infer from")
    }
    func lower(_ input: LoweringInput) -> LoweredStep? { nil }
}

/// state += x, written into the state's own buffer; the result is the state's new value. The
/// verify pass checks that operand 0 is a state leaf that nothing reads after the update.
struct AccumulateOp: OpDefinition {
    var name: String { "accumulate" }
    var updatesOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let state = try site.f32(0, "state"), x = try site.f32(1, "value")
        guard site.same(state, x) else { throw site.mismatch("value", expected: state, actual: x) }
        return ValueType(shape: state, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? { input.elementwise(AccumulateKernel(count: input.count)) }
}

struct AccumulateKernel: StepKernel {
    var count: Int
    var name: String { "accumulate(in-place)" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    // The output is operand 0's buffer: cq_add reads each element before writing it.
    func run(_ io: KernelIO) { cq_add(io.f32(0), io.f32(1), io.out, Int64(count), io.threads) }
}

extension Graph {
    /// A node reading `storage`'s current value.
    public func state(_ storage: StateStorage) -> Value {
        leaf(Op(StateOp(storage: storage)), ValueType(shape: storage.shape, element: .float32), label: storage.name)
    }

    /// Adds `value` into `state` (a `Graph.state` node) in place; the result is the new value.
    /// The update happens on every run, whether or not an output reads it.
    @discardableResult
    public func accumulate(_ state: Value, _ value: Value, label: String = "") throws -> Value {
        try record(Op(AccumulateOp()), [state, value], label)
    }
}
