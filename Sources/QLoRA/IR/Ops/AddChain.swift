import CQLoRAKernels

/// The sum of n ≥ 2 same-shaped values added left to right, ((x₀ + x₁) + x₂) + …: the bits of
/// the chain of `add` steps it replaces (made by `AddChainFusion`, mostly from the backward's
/// gradient sums: the six dX contributions of q/k/v, the four of gate/up).
struct AddChainOp: OpDefinition {
    var count: Int
    var name: String { "add_chain" }
    var fusedOps: [String] { Array(repeating: "add", count: count - 1) }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("count", .int(count))] }
    var bracketAttributes: String { "[\(count)]" }
    /// Each element is read from every operand before it is written.
    var mayReuseOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        guard count >= 2 else { throw site.invalid("adds at least 2 values, got \(count)") }
        try site.arity(count)
        let first = try site.f32(0, "operand 0")
        for i in 1..<count {
            let x = try site.f32(i, "operand \(i)")
            guard site.same(first, x) else { throw site.mismatch("operand \(i)", expected: first, actual: x) }
        }
        return ValueType(shape: first, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        LoweredStep(kernel: AddChainKernel(terms: count, length: input.count), flops: (count - 1) * input.count,
                    bytesMoved: 4 * input.count * (count + 1))
    }

    /// Gradients of a sum: the cotangent for every operand.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        node.operands.indices.map { d.wants(node, $0) ? cotangent : nil }
    }
}

struct AddChainKernel: StepKernel {
    var terms: Int, length: Int
    var name: String { "add_chain" }
    func workSplit(threads: Int) -> String { elementRangeSplit(length, threads: threads) }
    func run(_ io: KernelIO) {
        // The operand pointers on the stack: a run allocates nothing per step.
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: terms) { xs in
            for i in 0..<terms { xs.initializeElement(at: i, to: io.f32(i)) }
            cq_add_chain(xs.baseAddress, Int32(terms), io.out, Int64(length), io.threads)
        }
    }
}
