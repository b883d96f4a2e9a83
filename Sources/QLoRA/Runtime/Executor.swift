import CQLoRAKernels
import Foundation

/// Runs a plan's steps in order in one context. Checks the feeds, then calls each step's kernel:
/// inputs are read where the caller's arrays are and outputs are written straight into the
/// returned arrays (only an output that is an input, a parameter, a state or another output is
/// copied). Allocates nothing per step (the output arrays, once per run).
enum Executor {
    static func run(_ plan: ExecutablePlan, _ feeds: [String: Tensor], _ ids: [String: IntTensor],
                    _ context: ExecutionContext) throws -> [String: Tensor] {
        try validate(plan, feeds, ids)
        // One lock per domain the plan touches (a model's parameters, a store's gradients, a KV
        // cache), taken in one global order, so two plans sharing a domain cannot deadlock.
        plan.runLocks.lock()
        defer { plan.runLocks.unlock() }
        let inputs = plan.inputs.map { $0.element == .int32 ? FeedValues.int32(ids[$0.name]!.scalars) : .float(feeds[$0.name]!.scalars) }
        let outputs = try withInputPointers(inputs[...], []) { inputPointers in
            try withOutputArrays(plan.outputs.map { $0.shape.reduce(1, *) }[...], []) { outputPointers in
                try execute(plan, context, inputs: inputPointers, outputs: outputPointers)
            }
        }
        var results: [String: Tensor] = [:]
        for (binding, values) in zip(plan.outputs, outputs) {
            results[binding.name] = Tensor(uncheckedShape: binding.shape, scalars: values)
        }
        return results
    }

    /// The steps, in order, with every buffer resolved to a pointer. Each step's kernel came from
    /// its op definition's `lower`; the executor never needs to know which op it runs.
    private static func execute(_ plan: ExecutablePlan, _ context: ExecutionContext,
                                inputs: [UnsafeMutableRawPointer], outputs: [UnsafeMutablePointer<Float>]) throws {
        let arena = context.arena.raw
        let parameters = plan.memory.parameters
        func pointer(_ ref: BufferRef) -> UnsafeMutableRawPointer {
            switch ref {
            case let .arena(offset, _): return arena + offset
            case let .parameter(i): return UnsafeMutableRawPointer(parameters[i].floats)
            case let .cached(i): return UnsafeMutableRawPointer(plan.cachedBuffers[i].floats)
            case let .input(i): return inputs[i]
            case let .output(i): return UnsafeMutableRawPointer(outputs[i])
            case let .weight(i): return UnsafeMutableRawPointer(plan.weightViews + i)
            case let .state(i): return UnsafeMutableRawPointer(plan.memory.states[i].region.floats)
            }
        }
        let threads = Int32(plan.options.threads)
        let scratch = arena + plan.memory.scratchOffset
        let slots = context.operandSlots
        let profiler = StepProfiler.current
        var stepNanoseconds = [UInt64](repeating: 0, count: profiler == nil ? 0 : plan.steps.count)
        let observer = PlanStepObserver.current.flatMap { $0.plan === plan ? $0 : nil }
        // The plan's denormal mode on this thread (kernel teams take it from here); the caller's after.
        let callerFloatMode = cq_float_mode_set(plan.options.flushDenormals ? 1 : 0)
        defer { cq_float_mode_restore(callerFloatMode) }
        for (index, step) in plan.steps.enumerated() {
            for (k, ref) in step.operands.enumerated() { slots[k] = pointer(ref) }
            let start = profiler == nil ? 0 : DispatchTime.now().uptimeNanoseconds
            try step.kernel.run(KernelIO(operands: UnsafeBufferPointer(start: slots, count: step.operands.count), output: pointer(step.output),
                                     scratch: scratch, threads: threads, resultOffsets: step.resultOffsets))
            if profiler != nil { stepNanoseconds[index] = DispatchTime.now().uptimeNanoseconds - start }
            if let observer { observer.finished(step: index) }
        }
        profiler?.record(plan, nanoseconds: stepNanoseconds)
        // Outputs not computed in place (an input, a parameter, a value another output owns) are copied.
        for (k, binding) in plan.outputs.enumerated() where binding.ref != .output(k) {
            outputs[k].update(from: pointer(binding.ref).assumingMemoryBound(to: Float.self), count: binding.shape.reduce(1, *))
        }
    }

    /// One input's values as fed.
    enum FeedValues {
        case float([Float])
        case int32([Int32])

        func withPointer<R>(_ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
            // Kernels only read inputs: no step's output is ever an input buffer.
            switch self {
            case let .float(values): return try values.withUnsafeBytes { try body(UnsafeMutableRawPointer(mutating: $0.baseAddress!)) }
            case let .int32(values): return try values.withUnsafeBytes { try body(UnsafeMutableRawPointer(mutating: $0.baseAddress!)) }
            }
        }
    }

    /// Pointers to every input's values, valid inside `body` (nested scopes, one per input).
    private static func withInputPointers<R>(_ rest: ArraySlice<FeedValues>, _ pointers: [UnsafeMutableRawPointer],
                                             _ body: ([UnsafeMutableRawPointer]) throws -> R) throws -> R {
        guard let first = rest.first else { return try body(pointers) }
        return try first.withPointer { try withInputPointers(rest.dropFirst(), pointers + [$0], body) }
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
    static func validate(_ plan: ExecutablePlan, _ feeds: [String: Tensor], _ ids: [String: IntTensor]) throws {
        let expected = plan.inputShapes
        for name in (Array(feeds.keys) + Array(ids.keys)).sorted() where expected[name] == nil {
            throw QLoraError.invalidArgument("unknown input '\(name)'; the plan takes \(expected.keys.sorted())")
        }
        for input in plan.inputs where input.element == .int32 {
            guard let t = ids[input.name] else {
                throw QLoraError.invalidArgument("missing int32 input '\(input.name)' (shape \(input.shape)), fed through `ids:`")
            }
            guard t.shape == input.shape else {
                throw QLoraError.shapeMismatch(context: "input '\(input.name)'", expected: input.shape, actual: t.shape)
            }
        }
        for input in plan.inputs where input.element != .int32 {
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
