/// The result type of an operation given its operand types, or a `shapeMismatch` naming the op
/// (with its label), the operand and both shapes. Used when recording and again by the verify pass.
enum ShapeInference {
    static func infer(_ op: Op, _ operands: [ValueType], label: String) throws -> ValueType {
        let where_ = label.isEmpty ? op.name : "\(op.name) '\(label)'"
        func f32(_ i: Int, _ role: String) throws -> [Int] {
            guard operands[i].element == .float32 else {
                throw QLoraError.invalidArgument("\(where_): \(role) must be f32, got \(operands[i])")
            }
            return operands[i].shape
        }
        func arity(_ n: Int) throws {
            guard operands.count == n else {
                throw QLoraError.invalidArgument("\(where_): expects \(n) operands, got \(operands.count)")
            }
        }
        switch op {
        case .input, .parameter, .quantizedWeight, .cachedWeight:
            throw QLoraError.invalidArgument("\(where_): leaves have no operands to infer from")
        case .dequantize:
            try arity(1)
            guard operands[0].element == .quant4 else {
                throw QLoraError.invalidArgument("\(where_): operand must be a 4-bit weight, got \(operands[0])")
            }
            return ValueType(shape: operands[0].shape, element: .float32)
        case .matmul:
            try arity(2)
            let x = try f32(0, "input"), w = try f32(1, "weight")
            try checkLinear(x: x, weight: w, where_: where_)
            return ValueType(shape: x.dropLast() + [w[0]], element: .float32)
        case .add:
            try arity(2)
            let a = try f32(0, "lhs"), b = try f32(1, "rhs")
            let broadcastRow = b.count == 1 && a.last == b[0]
            guard a == b || broadcastRow else {
                throw QLoraError.shapeMismatch(context: "\(where_): rhs (same shape, or a row of the last dimension)",
                                               expected: a, actual: b)
            }
            return ValueType(shape: a, element: .float32)
        case .mul, .siluMul:
            try arity(2)
            let a = try f32(0, "lhs"), b = try f32(1, "rhs")
            guard a == b else { throw QLoraError.shapeMismatch(context: "\(where_): rhs", expected: a, actual: b) }
            return ValueType(shape: a, element: .float32)
        case .scale, .silu, .gelu, .relu:
            try arity(1)
            return ValueType(shape: try f32(0, "input"), element: .float32)
        case let .reshape(shape):
            try arity(1)
            let a = try f32(0, "input")
            guard shape.allSatisfy({ $0 > 0 }), shape.reduce(1, *) == a.reduce(1, *) else {
                throw QLoraError.shapeMismatch(context: "\(where_): element count of the new shape", expected: a, actual: shape)
            }
            return ValueType(shape: shape, element: .float32)
        case .rmsNorm:
            try arity(2)
            let x = try f32(0, "input"), w = try f32(1, "weight")
            guard let last = x.last, w == [last] else {
                throw QLoraError.shapeMismatch(context: "\(where_): weight", expected: [x.last ?? 0], actual: w)
            }
            return ValueType(shape: x, element: .float32)
        case let .fusedLinear(attrs):
            let expected = 2 + (attrs.hasLora ? 2 : 0) + (attrs.hasBias ? 1 : 0)
            try arity(expected)
            let x = try f32(0, "input"), w = operands[1].shape
            try checkLinear(x: x, weight: w, where_: where_)
            let n = w[0], k = w[1]
            var next = 2
            if attrs.hasLora {
                let a = try f32(2, "lora_A"), b = try f32(3, "lora_B")
                guard a.count == 2, a[1] == k, a[0] > 0 else {
                    throw QLoraError.shapeMismatch(context: "\(where_): lora_A [r, in]", expected: [a.first ?? 0, k], actual: a)
                }
                guard b == [n, a[0]] else {
                    throw QLoraError.shapeMismatch(context: "\(where_): lora_B [out, r]", expected: [n, a[0]], actual: b)
                }
                next = 4
            }
            if attrs.hasBias {
                let bias = try f32(next, "bias")
                guard bias == [n] else { throw QLoraError.shapeMismatch(context: "\(where_): bias", expected: [n], actual: bias) }
            }
            return ValueType(shape: x.dropLast() + [n], element: .float32)
        }
    }

    /// x [..., K] (rank 1 to 3) against a weight [N, K].
    private static func checkLinear(x: [Int], weight w: [Int], where_: String) throws {
        guard w.count == 2 else {
            throw QLoraError.shapeMismatch(context: "\(where_): weight must be [out, in]", expected: [w.first ?? 0, x.last ?? 0], actual: w)
        }
        guard (1...3).contains(x.count) else {
            throw QLoraError.shapeMismatch(context: "\(where_): input must be [in], [M, in] or [B, S, in]", expected: [w[1]], actual: x)
        }
        guard x.last == w[1] else {
            throw QLoraError.shapeMismatch(context: "\(where_): input's last dimension vs weight [out, in]",
                                           expected: Array(x.dropLast()) + [w[1]], actual: x)
        }
    }
}
