/// A KV cache's update: rows x [batch, seq, width] written into the cache state
/// [batch, capacity, width] at positions at...at+seq−1 (`at` an int32 [1] read at run time), in
/// place; the result is the cache's new value (read it, not the state leaf, afterwards).
struct KVWriteOp: OpDefinition {
    var name: String { "kv_write" }
    var updatesOperand: Int? { 0 }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(3)
        let cache = try site.f32(0, "cache"), x = try site.f32(1, "rows")
        guard cache.count == 3, x.count == 3, site.same(cache[0], x[0]), site.same(cache[2], x[2]) else {
            throw site.mismatch("rows [batch, seq, width] vs cache [batch, capacity, width]", expected: cache, actual: x)
        }
        guard operands[2].element == .int32, operands[2].count == 1 else { throw site.invalid("the position must be one int32, got \(operands[2])") }
        return ValueType(shape: cache, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let cache = input.shape(0), x = input.shape(1)
        return LoweredStep(kernel: KVWriteKernel(batch: x[0], seq: x[1], capacity: cache[1], width: x[2], label: input.node.label),
                           flops: 0, bytesMoved: 8 * x[0] * x[1] * x[2])
    }
}

struct KVWriteKernel: StepKernel {
    var batch: Int, seq: Int, capacity: Int, width: Int
    var label: String
    var name: String { "kv_write(in-place)" }
    func workSplit(threads: Int) -> String { "\(batch * seq) rows, 1 thread" }
    // The output is operand 0's buffer (the state): only the new rows are written.
    func run(_ io: KernelIO) throws {
        let at = Int(io.int32(2)[0])
        guard at >= 0, at + seq <= capacity else {
            throw QLoraError.invalidArgument("kv_write '\(label)': positions \(at)..<\(at + seq) are outside the cache's \(capacity) positions")
        }
        let x = io.f32(1)
        for b in 0..<batch {
            (io.out + (b * capacity + at) * width).update(from: x + b * seq * width, count: seq * width)
        }
    }
}

extension Graph {
    /// Writes `rows` [batch, seq, width] into `cache` (a `Graph.state` node [batch, capacity, width])
    /// at int32 position `at` [1]; the result is the updated cache.
    public func kvWrite(_ cache: Value, _ rows: Value, at position: Value, label: String = "") throws -> Value {
        try record(Op(KVWriteOp()), [cache, rows, position], label)
    }
}
