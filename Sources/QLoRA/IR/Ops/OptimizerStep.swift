import CQLoRAKernels

/// One optimizer step over a `ParameterStore`'s flat buffers, in place: operands [parameters,
/// gradients, moments...] (state leaves) and an optional trailing node it must run after (the last
/// gradient assignment). The result is the updated flat parameter buffer.
struct OptimizerStepOp: OpDefinition {
    var method: Optimizer.Method
    var count: Int
    var name: String {
        switch method {
        case .sgd: return "sgd_step"
        case .adamW: return "adamw_step"
        }
    }
    var updatesOperand: Int? { 0 }
    var stateOperands: Int { 2 + Optimizer.stateCount(method) }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        guard operands.count == stateOperands || operands.count == stateOperands + 1 else {
            throw site.invalid("expects \(stateOperands) state operands and an optional ordering operand, got \(operands.count)")
        }
        for k in 0..<stateOperands {
            let s = try site.f32(k, "state \(k)")
            let expected = k == 4 ? 1 : count   // AdamW's step counter is one value
            guard s.reduce(1, *) == expected else { throw site.mismatch("state \(k)", expected: [expected], actual: s) }
        }
        return ValueType(shape: operands[0].shape, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        LoweredStep(kernel: OptimizerKernel(method: method, count: count), flops: 12 * count, bytesMoved: 4 * count * (2 * stateOperands))
    }
}

struct OptimizerKernel: StepKernel {
    var method: Optimizer.Method
    var count: Int
    var name: String {
        switch method {
        case .sgd: return "sgd_step(flat, in-place)"
        case .adamW: return "adamw_step(flat, in-place)"
        }
    }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        func mutable(_ k: Int) -> UnsafeMutablePointer<Float> { UnsafeMutablePointer(mutating: io.f32(k)) }
        switch method {
        case let .sgd(lr, momentum):
            cq_sgd_step(io.out, io.f32(1), momentum == 0 ? nil : mutable(2), Int64(count), lr, momentum, 1, io.threads)
        case let .adamW(lr, beta1, beta2, eps, wd):
            cq_adamw_step(io.out, io.f32(1), mutable(2), mutable(3), mutable(4), Int64(count), lr, beta1, beta2, eps, wd, 1, io.threads)
        }
    }
}
