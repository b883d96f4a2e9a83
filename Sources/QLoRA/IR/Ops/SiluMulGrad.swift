import CQLoRAKernels

/// The SwiGLU gate's backward in one step: for h = silu(a)·b and the cotangent g,
/// da = (g·b)·silu'(a) (result 0) and db = g·silu(a) (result 1). Made by `silu_mul`'s vjp; each
/// element is the arithmetic of the separate steps it replaces (`mul`, `silu_grad`, `silu`,
/// `mul`), so the bits are theirs, and silu(a) is neither kept from the forward nor recomputed
/// into a buffer.
struct SiluMulGradOp: OpDefinition {
    var name: String { "silu_mul_grad" }
    var fusedOps: [String] { ["mul", "silu_grad", "silu", "mul"] }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(3)
        let a = try site.f32(0, "gate"), b = try site.f32(1, "up"), g = try site.f32(2, "cotangent")
        guard site.same(a, b) else { throw site.mismatch("up", expected: a, actual: b) }
        guard site.same(a, g) else { throw site.mismatch("cotangent", expected: a, actual: g) }
        return ValueType(shape: a, element: .float32)
    }

    func extraResultTypes(_ operands: [ValueType], at site: OpSite) throws -> [ValueType] {
        [try resultType(operands, at: site)]
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let n = input.node.type.count
        return LoweredStep(kernel: SiluMulGradKernel(count: n), flops: 12 * n, bytesMoved: 4 * 5 * n)
    }
}

struct SiluMulGradKernel: StepKernel {
    var count: Int
    var name: String { "silu_mul_grad" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        cq_silu_mul_grad(io.f32(0), io.f32(1), io.f32(2), io.out, io.result(1), Int64(count), io.threads)
    }
}
