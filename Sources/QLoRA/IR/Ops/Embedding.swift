import CQLoRAKernels

/// Embedding lookup: int32 ids [...] into a table [vocab, dim] give the rows [..., dim] as f32.
/// The table is f32 or bf16 (models often ship their embeddings in bf16; rows widen exactly).
/// An id outside 0..<vocab fails the run (the kernel reports the first one).
struct EmbeddingOp: OpDefinition {
    var name: String { "embedding" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(2)
        guard operands[0].element == .int32 else { throw site.invalid("ids must be int32, got \(operands[0])") }
        guard [.float32, .bfloat16].contains(operands[1].element) else { throw site.invalid("table must be f32 or bf16, got \(operands[1])") }
        let table = operands[1].shape
        guard table.count == 2 else { throw site.mismatch("table must be [vocab, dim]", expected: [table.first ?? 0, table.last ?? 0], actual: table) }
        return ValueType(shape: operands[0].shape + [table[1]], element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let ids = input.operands[0].type.count, table = input.operands[1].type
        let kernel = EmbeddingKernel(ids: ids, vocab: table.shape[0], dim: table.shape[1], bf16Table: table.element == .bfloat16,
                                     label: input.node.label)
        // A gather: no arithmetic; reads the ids and one table row per id, writes the rows.
        return LoweredStep(kernel: kernel, flops: 0, bytesMoved: 4 * ids + (table.element.byteWidth + 4) * input.count)
    }
}

struct EmbeddingKernel: StepKernel {
    var ids: Int, vocab: Int, dim: Int
    var bf16Table: Bool
    var label: String
    var name: String { "embedding" }
    func workSplit(threads: Int) -> String {
        ids * dim > 32768 ? "\(ids) ids over \(threads) \(threadWord(threads))" : "\(ids) ids, 1 thread"
    }

    func run(_ io: KernelIO) throws {
        let bad = bf16Table ? cq_embedding_bf16(io.int32(0), Int64(ids), io.bfloat16(1), Int64(vocab), Int64(dim), io.out, io.threads)
                            : cq_embedding(io.int32(0), Int64(ids), io.f32(1), Int64(vocab), Int64(dim), io.out, io.threads)
        guard bad < 0 else {
            let what = label.isEmpty ? "embedding" : "embedding '\(label)'"
            throw QLoraError.invalidArgument("\(what): id \(io.int32(0)[Int(bad)]) at flat index \(bad) is outside the table's \(vocab) rows")
        }
    }
}

extension Graph {
    /// The rows of `table` [vocab, dim] (f32 or bf16) for int32 `ids` [...]: [..., dim], f32.
    public func embedding(_ ids: Value, table: Value, label: String = "") throws -> Value {
        try record(Op(EmbeddingOp()), [ids, table], label)
    }
}

extension EmbeddingOp {
    /// The table's gradient: the cotangent rows scatter-added at their ids (ids in order); ids get none.
    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        guard d.wants(node, 1) else { return [nil, nil] }
        let table = d.type(node.operands[1])
        guard table.element == .float32 else { throw QLoraError.invalidArgument("embedding '\(node.label)': a bf16 table cannot be trained") }
        return [nil, try d.emit(Op(EmbeddingGradOp(vocab: table.shape[0])), [node.operands[0], cotangent], label: "grad.\(node.label)")]
    }
}
