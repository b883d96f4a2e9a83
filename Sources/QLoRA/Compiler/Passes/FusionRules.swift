/// The fusions, as rules over op definitions. Each one rewrites the root of its pattern, so the
/// QLoRA linear grows in steps as the pass walks forward:
///
///     matmul(x, dequantize(W))                          → fused_qlora_linear(x, W)
///     add(fused(x, W), scale?(matmul(matmul(x, A), B))) → fused_qlora_linear(x, W, A, B)
///     add(fused(...), bias)   (bias a 1-D row)          → fused_qlora_linear(..., bias)
///     mul(silu(a), b)                                   → silu_mul(a, b)
enum FusionRules {
    static let all: [FusionRule] = [baseLinear, lora(scaled: true), lora(scaled: false), bias, swiGLU]

    static let baseLinear = FusionRule(
        name: "dequantize→matmul",
        pattern: .op(MatmulOp.self, "mm", .value("x"), .op(DequantizeOp.self, "dq", .value("w"), shared: true))
    ) { m in
        .init(op: .fusedLinear(FusedLinearAttributes(scaling: 1, hasLora: false, hasBias: false, fusedOps: ["dequantize", "matmul"])),
              operands: [m["x"], m["w"]])
    }

    /// The LoRA branch added to a plain fused linear of the same x.
    static func lora(scaled: Bool) -> FusionRule {
        // x·Aᵀ may have other uses (the backward's dB reads it): `DownProjectionHandOff` then has
        // the fused kernel write it instead of a separate matmul.
        let product = Pattern.op(MatmulOp.self, "xab", .op(MatmulOp.self, "xa", .value("x"), .value("a"), shared: true), .value("b"))
        let term = scaled ? .op(ScaleOp.self, "scale", product) : product
        let plain = Pattern.op(FusedLinearOp.self, "base", .value("x"), .value("w")) { !$0.attributes.hasLora && !$0.attributes.hasBias }
        return FusionRule(name: scaled ? "linear+scaled lora" : "linear+lora", pattern: .op(AddOp.self, "add", plain, term),
                          commutative: true) { m in
            guard m.node("a").type.shape.count == 2, m.node("b").type.shape.count == 2,
                  var a = m.node("base").op.as(FusedLinearOp.self)?.attributes else { return nil }
            a.hasLora = true
            a.scaling = m.has("scale") ? m.node("scale").op.as(ScaleOp.self)!.factor : 1
            a.fusedOps += ["matmul(x,A)", "matmul(·,B)"] + (m.has("scale") ? ["scale"] : []) + ["add"]
            return .init(op: .fusedLinear(a), operands: [m["x"], m["w"], m["a"], m["b"]], label: inheritedLabel(m, "add", from: "base"))
        }
    }

    /// A layer's bias: add(y, bias) with a 1-D row as the second operand.
    static let bias = FusionRule(
        name: "linear+bias",
        pattern: .op(AddOp.self, "add", .op(FusedLinearOp.self, "linear", anyOperands: ()) { !$0.attributes.hasBias }, .value("bias"))
    ) { m in
        guard m.node("bias").type.shape.count == 1, var a = m.node("linear").op.as(FusedLinearOp.self)?.attributes else { return nil }
        a.hasBias = true
        a.fusedOps.append("add(bias)")
        // A layer with a bias ends in its "<layer>.bias" add; the fused node is the whole layer.
        var label = inheritedLabel(m, "add", from: "linear")
        if label.hasSuffix(".bias") { label.removeLast(".bias".count) }
        return .init(op: .fusedLinear(a), operands: m.node("linear").operands + [m["bias"]], label: label)
    }

    /// The SwiGLU gate.
    static let swiGLU = FusionRule(
        name: "silu·mul",
        pattern: .op(MulOp.self, "mul", .op(ActivationOp.self, "silu", .value("a")) { $0.function == .silu }, .value("b")) { !$0.siluGate },
        commutative: true
    ) { m in .init(op: .siluMul, operands: [m["a"], m["b"]]) }

    /// The root's label, or the absorbed node's when the root has none.
    private static func inheritedLabel(_ m: PatternMatch, _ root: String, from inner: String) -> String {
        m.node(root).label.isEmpty ? m.node(inner).label : m.node(root).label
    }
}
