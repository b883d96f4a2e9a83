import CQLoRAKernels

/// Which matmuls of a plan compiled with `computeType: .bfloat16` run in bf16 besides the fused
/// on-the-fly linears: the ones against a frozen weight — the 4-bit weights' dX = dY·W in the
/// backward, and the f32 lm_head (a frozen parameter: tied embedding or its own weight) forward
/// and dX. Matmuls against trainable parameters (LoRA A/B) stay f32, as do their gradients.
/// The kernels (cqlora_bf16.h) fall back to f32 where the CPU lacks AVX512-BF16.
extension LoweringInput {
    func bf16AgainstFrozenWeight(operand i: Int) -> Bool {
        guard options.computeType == .bfloat16 else { return false }
        let w = operands[i]
        if w.type.element == .quant4 { return true }
        if case let .parameter(p)? = w.op.leaf { return !p.trainable && w.type.element == .float32 }
        return false
    }
}

extension MatmulNNKernel {
    /// The bf16 kernel's split (matmul_nn_bf16_avx512.c); the f32 fallback splits as `workSplit` says without bf16.
    func bf16WorkSplit(threads: Int) -> String {
        "\((k + 31) / 32) 32-column panels of dX over up to \(threads) \(threadWord(threads)), N in order (f32 split without AVX512-BF16)"
    }

    /// dX in bf16; false (nothing written) where the CPU lacks AVX512-BF16.
    func runBF16(_ io: KernelIO) -> Bool {
        quantized ? cq_matmul_nn_q4_bf16(io.f32(0), Int64(m), io.weight(1), io.out, io.threads) != 0
                  : cq_matmul_nn_bf16(io.f32(0), Int64(m), io.f32(1), Int64(n), Int64(k), io.out, io.threads) != 0
    }
}
