/// The leaves: values that exist before any step runs. They have no type rule (their type is
/// declared) and lower to no step; the memory planner places them by their `LeafData`.

/// A named input fed at run time.
struct InputOp: OpDefinition {
    var inputName: String
    var name: String { "input" }
    var leaf: LeafData? { .input(name: inputName) }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("name", .string(inputName))] }
    var bracketAttributes: String { "[\(inputName)]" }
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType { throw leafHasNoRule(site) }
    func lower(_ input: LoweringInput) -> LoweredStep? { nil }
}

/// A full-precision tensor owned outside the graph (LoRA A/B, bias, norm weights).
struct ParameterOp: OpDefinition {
    var storage: ParameterStorage
    var name: String { "parameter" }
    var leaf: LeafData? { .parameter(storage) }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("name", .string(storage.name)), ("trainable", .bool(storage.trainable))] }
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType { throw leafHasNoRule(site) }
    func lower(_ input: LoweringInput) -> LoweredStep? { nil }
}

/// A frozen 4-bit weight [out, in], or (`cached`) the f32 copy of it that mode lowering keeps for
/// the plan's lifetime.
struct WeightOp: OpDefinition {
    var storage: QuantizedWeightStorage
    var cached: Bool
    var name: String { cached ? "cached_weight" : "quantized_weight" }
    var leaf: LeafData? { cached ? .cachedWeight(storage) : .quantizedWeight(storage) }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("name", .string(storage.name)), ("quant_type", .string(storage.quantType.rawValue)), ("block_size", .int(storage.blockSize)),
         ("double_quant", .bool(storage.isDoubleQuantized))]
    }
    var bracketAttributes: String {
        "[\(storage.quantType.rawValue), block \(storage.blockSize)\(storage.isDoubleQuantized ? ", double-quant" : "")]"
    }
    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType { throw leafHasNoRule(site) }
    func lower(_ input: LoweringInput) -> LoweredStep? { nil }
}

private func leafHasNoRule(_ site: OpSite) -> QLoraError { site.invalid("leaves have no operands to infer from") }

extension Op {
    static func input(name: String) -> Op { Op(InputOp(inputName: name)) }
    static func parameter(_ storage: ParameterStorage) -> Op { Op(ParameterOp(storage: storage)) }
    static func quantizedWeight(_ storage: QuantizedWeightStorage) -> Op { Op(WeightOp(storage: storage, cached: false)) }
    static func cachedWeight(_ storage: QuantizedWeightStorage) -> Op { Op(WeightOp(storage: storage, cached: true)) }

    /// The weight storage of a 4-bit or cached weight leaf.
    var weightStorage: QuantizedWeightStorage? { self.as(WeightOp.self)?.storage }
}
