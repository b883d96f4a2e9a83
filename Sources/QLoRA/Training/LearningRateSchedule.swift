import Foundation

/// Learning-rate schedules as transformers' optimization.py defines them (the multiplier of the
/// base rate after `step` optimizer steps, step counted from 0, so the first update uses step 0):
/// - get_constant_schedule_with_warmup: step < W ? step / max(1, W) : 1
/// - get_linear_schedule_with_warmup: step < W ? step / max(1, W)
///       : max(0, (T − step) / max(1, T − W))
/// - get_cosine_schedule_with_warmup (num_cycles 0.5): step < W ? step / max(1, W)
///       : max(0, 0.5 · (1 + cos(π · 2 · 0.5 · (step − W) / max(1, T − W))))
/// with W the warm-up steps and T the total steps. As in transformers, a warm-up makes the first
/// update's rate 0.
public struct LearningRateSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, linear, cosine }

    public var kind: Kind
    public var warmupSteps: Int
    public var totalSteps: Int

    public init(_ kind: Kind = .constant, warmupSteps: Int = 0, totalSteps: Int) throws {
        guard warmupSteps >= 0 else { throw QLoraError.invalidArgument("warm-up steps must be >= 0, got \(warmupSteps)") }
        guard totalSteps > 0 else { throw QLoraError.invalidArgument("total steps must be > 0, got \(totalSteps)") }
        self.kind = kind
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
    }

    /// The multiplier after `step` completed optimizer steps (0 for the first update).
    public func multiplier(afterSteps step: Int) -> Double {
        let s = Double(step), w = Double(warmupSteps), t = Double(totalSteps)
        if step < warmupSteps { return s / max(1, w) }
        switch kind {
        case .constant: return 1
        case .linear: return max(0, (t - s) / max(1, t - w))
        case .cosine:
            let progress = (s - w) / max(1, t - w)
            return max(0, 0.5 * (1 + cos(Double.pi * 2 * 0.5 * progress)))
        }
    }

    /// The rate of optimizer step `step` (1-based) for base rate `base`.
    public func learningRate(step: Int, base: Double) -> Double { base * multiplier(afterSteps: step - 1) }
}
