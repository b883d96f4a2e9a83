import CQLoRAKernels

/// Global-norm gradient clipping exactly as torch.nn.utils.clip_grad_norm_: the total is the L2
/// norm of the per-tensor L2 norms (float32 values, in the store's parameter order), and the clip
/// coefficient min(max_norm / (total + 1e-6), 1) multiplies every gradient (also when it is 1).
public enum GradientNorm {
    /// Each parameter's gradient L2 norm (float32; the squares summed in double, in index order).
    public static func perTensor(_ store: ParameterStore) -> [Float] {
        store.flatGradientState.read { store.gradients.map { g in Float(cq_sum_squares(g.region.floats, Int64(g.count)).squareRoot()) } }
    }

    /// The L2 norm of the per-tensor norms, as float32 (torch's `get_total_norm`).
    public static func total(_ store: ParameterStore) -> Float {
        total(of: perTensor(store))
    }

    static func total(of norms: [Float]) -> Float {
        var s = 0.0
        for n in norms { s += Double(n) * Double(n) }
        return Float(s.squareRoot())
    }

    /// torch's clip coefficient: float32 max_norm / (total + 1e-6), clamped to at most 1.
    public static func clipCoefficient(total: Float, maxNorm: Double) -> Float {
        let coef = Float(maxNorm) / (total + Float(1e-6))
        return min(coef, 1)
    }
}

extension ParameterStore {
    /// Parameter `index`'s gradient as the last run (or `setGradient`) left it.
    public func gradient(_ index: Int) -> Tensor { gradients[index].tensor }

    /// Overwrites parameter `index`'s gradient (gradients computed elsewhere, a test's fixture).
    public func setGradient(_ index: Int, _ tensor: Tensor) throws {
        let g = gradients[index]
        guard tensor.shape == g.shape else {
            throw QLoraError.shapeMismatch(context: "gradient of '\(parameters[index].name)'", expected: g.shape, actual: tensor.shape)
        }
        g.write { tensor.scalars.withUnsafeBufferPointer { g.region.floats.update(from: $0.baseAddress!, count: g.count) } }
    }

    /// Overwrites the whole flat parameter buffer (a checkpoint's copy of `flatValues`).
    public func restoreFlatValues(_ values: [Float], source: String) throws {
        guard values.count == count else {
            throw QLoraError.shapeMismatch(context: "\(source): flat parameter buffer", expected: [count], actual: [values.count])
        }
        parameterLocks.locked { values.withUnsafeBufferPointer { flatParameterState.region.floats.update(from: $0.baseAddress!, count: count) } }
    }
}
