/// The fusion passes around the rule-based fusion, one switch each (`CompileOptions.fusionStages`,
/// all on by default; `CompileOptions.fusion = false` turns every fusion off). Tests turn one
/// stage off to compare a plan with the plan without it bit for bit.
struct FusionStages: OptionSet, Sendable, Hashable {
    let rawValue: Int
    /// mul(silu(a), b) → silu_mul before autodiff, so the backward is one `silu_mul_grad` step
    /// (`SwiGLUBeforeAutodiff`) and a training plan's gate/up group can take the epilogue.
    static let swiGLUBeforeAutodiff = FusionStages(rawValue: 1 << 0)
    /// On-the-fly linears of one x → one group step (`LinearGroupFusion`), inference and training.
    static let linearGroups = FusionStages(rawValue: 1 << 1)
    /// An rms_norm read only by a group (or a lone on-the-fly linear) → the group normalizes its x
    /// (`NormIntoLinearGroup`).
    static let normIntoLinearGroups = FusionStages(rawValue: 1 << 2)
    /// add(add(a, b), c) → add_chain(a, b, c), the same additions in the same order (`AddChainFusion`).
    static let addChains = FusionStages(rawValue: 1 << 3)
    static let all: FusionStages = [.swiGLUBeforeAutodiff, .linearGroups, .normIntoLinearGroups, .addChains]
}
