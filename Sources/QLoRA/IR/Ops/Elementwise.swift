import CQLoRAKernels

/// The elementwise ops: add (with a row broadcast), mul, scale, the activations, and silu_mul
/// (the SwiGLU gate fusion makes of mul(silu(a), b)).

/// Elementwise sum; the second operand may be a 1-D row broadcast over the last dimension.
struct AddOp: OpDefinition {
    var name: String { "add" }
    /// Elementwise: each element is read before it is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let a = try site.f32(0, "lhs"), b = try site.f32(1, "rhs")
        guard site.same(a, b) || (b.count == 1 && a.last.map { site.same($0, b[0]) } == true) else {
            throw site.mismatch("rhs (same shape, or a row of the last dimension)", expected: a, actual: b)
        }
        return ValueType(shape: a, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let b = input.shape(1)
        // A 1-D rhs against a higher-rank lhs is a row broadcast (the type rule checked it).
        let isRow = b.count == 1 && input.node.type.shape.count > 1
        return input.elementwise(isRow ? AddKernel(rows: input.count / b[0], width: b[0]) : AddKernel(rows: 1, width: input.count, isRow: false))
    }

    static let graphFile = ("add", GraphFileSpelling(arity: 2) { _ in Op(AddOp()) })
}

struct AddKernel: StepKernel {
    var rows: Int, width: Int
    var isRow = true
    var name: String { isRow ? "add_row" : "add" }
    func workSplit(threads: Int) -> String {
        guard isRow else { return elementRangeSplit(width, threads: threads) }
        return rows * width > 32768 ? "\(rows) rows over \(threads) \(threadWord(threads))" : "\(rows * width) elements, 1 thread"
    }
    func run(_ io: KernelIO) {
        if isRow { cq_add_row(io.f32(0), io.f32(1), io.out, Int64(rows), Int64(width), io.threads) }
        else { cq_add(io.f32(0), io.f32(1), io.out, Int64(width), io.threads) }
    }
}

/// Elementwise product of two same-shaped values, or (`siluGate`) silu(a)·b.
struct MulOp: OpDefinition {
    var siluGate = false
    var name: String { siluGate ? "silu_mul" : "mul" }
    /// Elementwise: each element is read before it is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }
    var fusedOps: [String] { siluGate ? ["silu", "mul"] : [] }
    var jsonAttributes: [(key: String, value: JSONValue)] { siluGate ? [("fused_ops", .array([.string("silu"), .string("mul")]))] : [] }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        let a = try site.f32(0, "lhs"), b = try site.f32(1, "rhs")
        guard site.same(a, b) else { throw site.mismatch("rhs", expected: a, actual: b) }
        return ValueType(shape: a, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        input.elementwise(MulKernel(count: input.count, siluGate: siluGate), flopsPerElement: siluGate ? 5 : 1)
    }

    static let graphFile = ("mul", GraphFileSpelling(arity: 2) { _ in Op(MulOp()) })
}

struct MulKernel: StepKernel {
    var count: Int
    var siluGate: Bool
    var name: String { siluGate ? "silu_mul" : "mul" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        if siluGate { cq_silu_mul(io.f32(0), io.f32(1), io.out, Int64(count), io.threads) }
        else { cq_mul(io.f32(0), io.f32(1), io.out, Int64(count), io.threads) }
    }
}

/// Multiplication by a constant.
struct ScaleOp: OpDefinition {
    var factor: Float
    var name: String { "scale" }
    /// Elementwise: each element is read before it is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("factor", IRDump.number(factor))] }
    var bracketAttributes: String { "[\(factor)]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        return ValueType(shape: try site.f32(0, "input"), element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? { input.elementwise(ScaleKernel(factor: factor, count: input.count)) }

    static let graphFile = ("scale", GraphFileSpelling(arity: 1, keys: ["factor"], required: ["factor"]) {
        Op(ScaleOp(factor: try $0.float("factor")))
    })
}

struct ScaleKernel: StepKernel {
    var factor: Float, count: Int
    var name: String { "scale" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) { cq_scale(io.f32(0), factor, io.out, Int64(count), io.threads) }
}

/// A pointwise activation function.
enum Activation: String, Sendable, CaseIterable {
    case silu, gelu, relu

    /// FLOPs per element for the cost model.
    var flops: Int {
        switch self {
        case .silu: return 4
        case .gelu: return 8
        case .relu: return 1
        }
    }
}

struct ActivationOp: OpDefinition {
    var function: Activation
    var name: String { function.rawValue }
    /// Elementwise: each element is read before it is written, so it may run in place.
    var mayReuseOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        return ValueType(shape: try site.f32(0, "input"), element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        input.elementwise(ActivationKernel(function: function, count: input.count), flopsPerElement: function.flops)
    }

    static let graphFiles = Activation.allCases.map { f in
        (f.rawValue, GraphFileSpelling(arity: 1) { _ in Op(ActivationOp(function: f)) })
    }
}

struct ActivationKernel: StepKernel {
    var function: Activation, count: Int
    var name: String { function.rawValue }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        switch function {
        case .silu: cq_silu(io.f32(0), io.out, Int64(count), io.threads)
        case .gelu: cq_gelu(io.f32(0), io.out, Int64(count), io.threads)
        case .relu: cq_relu(io.f32(0), io.out, Int64(count), io.threads)
        }
    }
}

extension Op {
    static var add: Op { Op(AddOp()) }
    static var mul: Op { Op(MulOp()) }
    static var siluMul: Op { Op(MulOp(siluGate: true)) }
    static func scale(_ factor: Float) -> Op { Op(ScaleOp(factor: factor)) }
    static var silu: Op { Op(ActivationOp(function: .silu)) }
    static var gelu: Op { Op(ActivationOp(function: .gelu)) }
    static var relu: Op { Op(ActivationOp(function: .relu)) }
}

extension Graph {
    /// a + b; b may be a 1-D row broadcast over a's last dimension.
    public func add(_ a: Value, _ b: Value, label: String = "") throws -> Value { try record(.add, [a, b], label) }
    public func mul(_ a: Value, _ b: Value, label: String = "") throws -> Value { try record(.mul, [a, b], label) }
    public func scale(_ a: Value, by s: Float, label: String = "") throws -> Value { try record(.scale(s), [a], label) }
    public func silu(_ a: Value, label: String = "") throws -> Value { try record(.silu, [a], label) }
    public func gelu(_ a: Value, label: String = "") throws -> Value { try record(.gelu, [a], label) }
    public func relu(_ a: Value, label: String = "") throws -> Value { try record(.relu, [a], label) }
}

// MARK: - Vector-Jacobian products

extension AddOp {
    /// da = g; db = g, or Σ over rows of g for a broadcast row.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let bShape = d.type(node.operands[1]).shape
        var db: Int?
        if d.wants(node, 1) {
            db = bShape == node.type.shape ? cotangent : try d.emit(Op(SumRowsOp()), [cotangent], label: "grad.\(node.label).row")
        }
        return [d.wants(node, 0) ? cotangent : nil, db]
    }
}

extension MulOp {
    /// mul: da = g·b, db = g·a. silu_mul (silu(a)·b): da = g·b·silu'(a), db = g·silu(a), both
    /// from one `silu_mul_grad` step when both are wanted.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        let a = node.operands[0], b = node.operands[1], label = "grad.\(node.label)"
        if siluGate, d.wants(node, 0), d.wants(node, 1), a != b {
            let da = try d.emit(Op(SiluMulGradOp()), [a, b, cotangent], label: label)
            return [da, try d.emit(Op(ResultOp(index: 1)), [da], label: "\(label).up")]
        }
        if siluGate {
            let da = d.wants(node, 0)
                ? try d.emit(Op(ActivationGradOp(function: .silu)), [a, try d.emit(.mul, [cotangent, b], label: label)], label: label) : nil
            let db = d.wants(node, 1) ? try d.emit(.mul, [cotangent, try d.emit(.silu, [a], label: label)], label: label) : nil
            return [da, db]
        }
        return [d.wants(node, 0) ? try d.emit(.mul, [cotangent, b], label: label) : nil,
                d.wants(node, 1) ? try d.emit(.mul, [cotangent, a], label: label) : nil]
    }
}

extension ScaleOp {
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        [try d.emit(.scale(factor), [cotangent], label: "grad.\(node.label)")]
    }
}

extension ActivationOp {
    /// g·f'(x), with gelu in its exact erf form: f'(x) = Φ(x) + x·φ(x).
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        [try d.emit(Op(ActivationGradOp(function: function)), [node.operands[0], cotangent], label: "grad.\(node.label)")]
    }
}
