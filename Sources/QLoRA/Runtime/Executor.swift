import CQLoRAKernels

/// Runs a plan's steps in order in one context. Checks the feeds, copies them into the arena,
/// calls each step's kernel, copies the outputs out. Allocates nothing per step.
enum Executor {
    static func run(_ plan: ExecutablePlan, _ feeds: [String: Tensor], _ context: ExecutionContext) throws -> [String: Tensor] {
        try validate(plan, feeds)
        let arena = context.arena.raw
        let parameters = plan.memory.parameters
        for p in parameters { p.lock.lockRead() }
        defer { for p in parameters { p.lock.unlock() } }
        var weightViews = plan.memory.weights.map { $0.kernelView }

        func floats(_ ref: BufferRef) -> UnsafeMutablePointer<Float> {
            switch ref {
            case let .arena(offset, _): return (arena + offset).assumingMemoryBound(to: Float.self)
            case let .parameter(i): return parameters[i].buffer.floats
            case let .cached(i): return plan.cachedBuffers[i].floats
            case .weight: preconditionFailure("a 4-bit weight has no f32 view")
            }
        }

        for input in plan.inputs {
            let tensor = feeds[input.name]!
            tensor.scalars.withUnsafeBufferPointer { floats(input.ref).update(from: $0.baseAddress!, count: $0.count) }
        }
        let threads = Int32(plan.options.threads)
        let scratch = arena + plan.memory.scratchOffset
        for step in plan.steps {
            let out = floats(step.output)
            let ops = step.operands
            func opt(_ i: Int) -> UnsafePointer<Float>? { i < ops.count ? UnsafePointer(floats(ops[i])) : nil }
            switch step.kernel {
            case let .fusedLinear(m, n, k, r, scaling, hasBias):
                guard case let .weight(w) = ops[1] else { preconditionFailure("fused linear without a 4-bit weight") }
                _ = n; _ = k
                cq_fused_linear(opt(0), Int64(m), &weightViews[w], r > 0 ? opt(2) : nil, r > 0 ? opt(3) : nil, Int32(r), scaling,
                                hasBias ? opt(r > 0 ? 4 : 2) : nil, out, scratch, threads)
            case let .denseLinear(m, n, k, r, scaling, hasBias):
                cq_dense_linear(opt(0), Int64(m), opt(1), Int64(n), Int64(k), r > 0 ? opt(2) : nil, r > 0 ? opt(3) : nil, Int32(r),
                                scaling, hasBias ? opt(r > 0 ? 4 : 2) : nil, out, scratch, threads)
            case .dequantize:
                guard case let .weight(w) = ops[0] else { preconditionFailure("dequantize without a 4-bit weight") }
                cq_dequantize_4bit(&weightViews[w], out, threads)
            case let .matmul(m, n, k):
                cq_matmul_nt(opt(0), Int64(m), opt(1), Int64(n), Int64(k), out, scratch, threads)
            case let .add(count): cq_add(opt(0), opt(1), out, Int64(count), threads)
            case let .addRow(rows, width): cq_add_row(opt(0), opt(1), out, Int64(rows), Int64(width), threads)
            case let .mul(count): cq_mul(opt(0), opt(1), out, Int64(count), threads)
            case let .scale(s, count): cq_scale(opt(0), s, out, Int64(count), threads)
            case let .silu(count): cq_silu(opt(0), out, Int64(count), threads)
            case let .gelu(count): cq_gelu(opt(0), out, Int64(count), threads)
            case let .relu(count): cq_relu(opt(0), out, Int64(count), threads)
            case let .siluMul(count): cq_silu_mul(opt(0), opt(1), out, Int64(count), threads)
            case let .rmsNorm(eps, rows, width): cq_rmsnorm(opt(0), opt(1), eps, out, Int64(rows), Int64(width), threads)
            }
        }
        var results: [String: Tensor] = [:]
        for output in plan.outputs {
            let count = output.shape.reduce(1, *)
            let values = Array(UnsafeBufferPointer(start: floats(output.ref), count: count))
            results[output.name] = Tensor(uncheckedShape: output.shape, scalars: values)
        }
        return results
    }

    /// Every declared input fed once with its shape and finite values; no unknown names.
    static func validate(_ plan: ExecutablePlan, _ feeds: [String: Tensor]) throws {
        let expected = plan.inputShapes
        for name in feeds.keys.sorted() where expected[name] == nil {
            throw QLoraError.invalidArgument("unknown input '\(name)'; the plan takes \(expected.keys.sorted())")
        }
        for input in plan.inputs {
            guard let t = feeds[input.name] else {
                throw QLoraError.invalidArgument("missing input '\(input.name)' (shape \(input.shape))")
            }
            guard t.shape == input.shape else {
                throw QLoraError.shapeMismatch(context: "input '\(input.name)'", expected: input.shape, actual: t.shape)
            }
            if let bad = t.firstNonFiniteIndex {
                throw QLoraError.invalidArgument("input '\(input.name)': non-finite value \(t.scalars[bad]) at flat index \(bad)")
            }
        }
    }
}
