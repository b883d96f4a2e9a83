import CQLoRAKernels

/// Runs a plan's steps in order in one context. Checks the feeds, then calls each step's kernel:
/// inputs are read where the caller's arrays are and outputs are written straight into the
/// returned arrays (only an output that is an input, a parameter or another output is copied).
/// Allocates nothing per step (the output arrays, once per run).
enum Executor {
    static func run(_ plan: ExecutablePlan, _ feeds: [String: Tensor], _ context: ExecutionContext) throws -> [String: Tensor] {
        try validate(plan, feeds)
        let parameters = plan.memory.parameters
        for p in parameters { p.lock.lockRead() }
        defer { for p in parameters { p.lock.unlock() } }
        let inputs = plan.inputs.map { feeds[$0.name]!.scalars }
        let outputs = try withInputPointers(inputs[...], []) { inputPointers in
            try withOutputArrays(plan.outputs.map { $0.shape.reduce(1, *) }[...], []) { outputPointers in
                execute(plan, context, inputs: inputPointers, outputs: outputPointers)
            }
        }
        var results: [String: Tensor] = [:]
        for (binding, values) in zip(plan.outputs, outputs) {
            results[binding.name] = Tensor(uncheckedShape: binding.shape, scalars: values)
        }
        return results
    }

    /// The steps, in order, with every buffer resolved to a pointer.
    private static func execute(_ plan: ExecutablePlan, _ context: ExecutionContext,
                                inputs: [UnsafeMutablePointer<Float>], outputs: [UnsafeMutablePointer<Float>]) {
        let arena = context.arena.raw
        let parameters = plan.memory.parameters
        var weightViews = plan.memory.weights.map { $0.kernelView }
        func floats(_ ref: BufferRef) -> UnsafeMutablePointer<Float> {
            switch ref {
            case let .arena(offset, _): return (arena + offset).assumingMemoryBound(to: Float.self)
            case let .parameter(i): return parameters[i].buffer.floats
            case let .cached(i): return plan.cachedBuffers[i].floats
            case let .input(i): return inputs[i]
            case let .output(i): return outputs[i]
            case .weight: preconditionFailure("a 4-bit weight has no f32 view")
            }
        }
        let threads = Int32(plan.options.threads)
        let scratch = arena + plan.memory.scratchOffset
        for step in plan.steps {
            let out = floats(step.output)
            let ops = step.operands
            func opt(_ i: Int) -> UnsafePointer<Float>? { i < ops.count ? UnsafePointer(floats(ops[i])) : nil }
            switch step.kernel {
            case let .fusedLinear(m, _, _, r, scaling, hasBias, bf16):
                guard case let .weight(w) = ops[1] else { preconditionFailure("fused linear without a 4-bit weight") }
                _ = cq_fused_linear_ex(opt(0), Int64(m), &weightViews[w], r > 0 ? opt(2) : nil, r > 0 ? opt(3) : nil, Int32(r),
                                       scaling, hasBias ? opt(r > 0 ? 4 : 2) : nil, out, scratch, threads, bf16 ? 1 : 0)
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
        // Outputs not computed in place (an input, a parameter, a value another output owns) are copied.
        for (k, binding) in plan.outputs.enumerated() where binding.ref != .output(k) {
            outputs[k].update(from: floats(binding.ref), count: binding.shape.reduce(1, *))
        }
    }

    /// Pointers to every input's scalars, valid inside `body` (nested scopes, one per input).
    private static func withInputPointers<R>(_ rest: ArraySlice<[Float]>, _ pointers: [UnsafeMutablePointer<Float>],
                                             _ body: ([UnsafeMutablePointer<Float>]) throws -> R) throws -> R {
        guard let first = rest.first else { return try body(pointers) }
        return try first.withUnsafeBufferPointer { buf in
            // Kernels only read inputs: no step's output is ever an input buffer.
            try withInputPointers(rest.dropFirst(), pointers + [UnsafeMutablePointer(mutating: buf.baseAddress!)], body)
        }
    }

    /// New arrays of `counts` elements whose pointers `body` fills; every element is written by a
    /// kernel or by the final copy, so the arrays are never read uninitialised.
    private static func withOutputArrays(_ counts: ArraySlice<Int>, _ pointers: [UnsafeMutablePointer<Float>],
                                         _ body: ([UnsafeMutablePointer<Float>]) throws -> Void) throws -> [[Float]] {
        guard let count = counts.first else { try body(pointers); return [] }
        var rest: [[Float]] = []
        let array = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            rest = try withOutputArrays(counts.dropFirst(), pointers + [buffer.baseAddress!], body)
            initialized = count
        }
        return [array] + rest
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
