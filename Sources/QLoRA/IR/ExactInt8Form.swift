import CQLoRAKernels

/// A lossless int8 copy of a frozen f32 matrix [N, K] whose values are exactly d·q per block of
/// 32 (d = max|block| / 127, q an integer in [-127, 127]) — what a GGUF Q8_0 tensor dequantizes
/// to, e.g. SmolLM2's tied embedding / lm_head. Small-M products read it (1.06 bytes per weight
/// instead of 4) with the bits of the f32 product (`cq_matmul_nt_exact`). Made only when every
/// value passes; any other matrix keeps its f32 path.
final class ExactInt8Form: @unchecked Sendable {
    let codes: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>

    /// Matrices worth the check: frozen f32 [N, K] of at least 1 Mi values (an lm_head), K within
    /// the kernel's row buffer.
    static func worthChecking(shape: [Int], trainable: Bool, element: ElementType) -> Bool {
        shape.count == 2 && !trainable && element == .float32 && shape[0] * shape[1] >= 1 << 20 && shape[1] <= Int(CQ_EXACT_INT8_MAX_K)
    }

    /// The form of `values` [rows, cols], or nil when some value is not d·q exactly.
    init?(values: UnsafePointer<Float>, rows: Int, cols: Int) {
        let blocks = (cols + Int(CQ_EXACT_INT8_BLOCK) - 1) / Int(CQ_EXACT_INT8_BLOCK)
        // Checked before self is initialized: a class init failing later would run deinit too.
        let q = UnsafeMutablePointer<Int8>.allocate(capacity: rows * cols), d = UnsafeMutablePointer<Float>.allocate(capacity: rows * blocks)
        guard cq_exact_int8_blocks(values, Int64(rows), Int64(cols), q, d) == 1 else {
            q.deallocate()
            d.deallocate()
            return nil
        }
        codes = q
        scales = d
    }

    deinit {
        codes.deallocate()
        scales.deallocate()
    }
}
