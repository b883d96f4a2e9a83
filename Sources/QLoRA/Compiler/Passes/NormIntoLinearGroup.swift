/// Pass 4c (after the linear groups, fusion on): the RMSNorm in front of a group — q/k/v after
/// input_layernorm, gate/up after post_attention_layernorm — moves into the group step, which
/// normalizes x once into its scratch and runs the members on it:
///
///     group(rms_norm(h, γ), W₁..., ...)  → group[rms_norm](h, γ, W₁..., ...)
///     fused(rms_norm(h, γ), W, ...)      → group[rms_norm](h, γ, W, ...)    (a lone on-the-fly linear)
///
/// Only when the group (or linear) is the normalized value's one reader: a training plan's
/// backward also reads it (x·Aᵀ, the LoRA weight gradient), so training norms stay steps. The
/// normalization is `cq_rmsnorm`'s arithmetic, so the bits do not change. Rewrites in place: the
/// rms_norm is left for dead code.
enum NormIntoLinearGroup {
    static func run(_ input: IRGraph) -> IRGraph {
        var g = input
        let uses = g.useCounts()
        for n in g.nodes {
            guard let x = n.operands.first, uses[x] == 1, let norm = g.nodes[x].op.as(RMSNormOp.self) else { continue }
            let group: FusedLinearGroupOp
            if let existing = n.op.as(FusedLinearGroupOp.self), existing.normEps == nil {
                group = existing
            } else if LinearGroupFusion.isMember(n, in: g), !LinearGroupFusion.attributes(n).takesDownProjection {
                group = FusedLinearGroupOp(members: [LinearGroupFusion.attributes(n)], siluMul: false)
            } else { continue }
            var fused = group
            fused.normEps = norm.eps
            g.nodes[n.id].op = Op(fused)
            g.nodes[n.id].operands = g.nodes[x].operands + n.operands.dropFirst()
        }
        return g
    }
}
