/// The last position of a sequence: x [batch, seq, width] gives [batch, 1, width] (a copy of
/// each batch's row seq − 1). Generation needs only the last position's logits, so the lm_head
/// (vocab × hidden, the largest matmul of a small model) runs on one row instead of seq.
struct LastPositionOp: OpDefinition {
    var name: String { "last_position" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        let x = try site.f32(0, "input")
        guard x.count == 3 else { throw site.mismatch("input [batch, seq, width]", expected: [1, 1, 1], actual: x) }
        return ValueType(shape: [x[0], 1, x[2]], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let x = input.shape(0)
        return LoweredStep(kernel: LastPositionKernel(batch: x[0], seq: x[1], width: x[2]), flops: 0, bytesMoved: 8 * x[0] * x[2])
    }
}

struct LastPositionKernel: StepKernel {
    var batch: Int, seq: Int, width: Int
    var name: String { "last_position" }
    func workSplit(threads: Int) -> String { "\(batch) rows, 1 thread" }
    func run(_ io: KernelIO) throws {
        let x = io.f32(0)
        for b in 0..<batch { (io.out + b * width).update(from: x + (b * seq + seq - 1) * width, count: width) }
    }
}

extension Graph {
    /// Row seq − 1 of each batch of `x` [batch, seq, width]: [batch, 1, width].
    public func lastPosition(_ x: Value, label: String = "") throws -> Value {
        try record(Op(LastPositionOp()), [x], label)
    }
}
