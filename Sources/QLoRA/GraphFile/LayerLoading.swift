extension GraphDefinition {
    /// The QuantizedLinear of checkpoint module `module`: its weight (and bias, per `rule`) from
    /// `weights`, or zero weights of the given size; the adapter's A/B when it has the module.
    func makeLayer(_ module: String, inFeatures: Int, outFeatures: Int, bias rule: BiasRule, weights: (any GraphWeightSource)?,
                   lora: LoraModuleWeights?, fresh: QLoraConfig? = nil, seed: UInt64, neededBy: String,
                   parameterLock: ReadWriteLock) throws -> QuantizedLinear {
        var config = fresh ?? QLoraConfig()
        if let lora { config = try GraphDefinition.config(for: lora) }
        let layer: QuantizedLinear
        if let weights {
            let weight = try weights.quantizedWeight("\(module).weight", neededBy: neededBy)
            let biasName = "\(module).bias"
            if rule == .required, !weights.contains(biasName) { throw weights.missingTensor(biasName, neededBy: neededBy) }
            let bias = rule != .none && weights.contains(biasName) ? try weights.tensor(biasName, neededBy: neededBy) : nil
            if let bias, bias.shape != [weight.shape[0]] {
                throw QLoraError.malformedFile(file: weights.path, field: biasName,
                                               reason: "shape disagreement: expected [\(weight.shape[0])] (out of \(module).weight \(weight.shape)), got \(bias.shape)")
            }
            layer = try QuantizedLinear(quantizedWeight: weight, bias: bias, config: config, name: module, seed: seed, lora: true,
                                        parameterLock: parameterLock)
        } else {
            layer = try QuantizedLinear(inFeatures: inFeatures, outFeatures: outFeatures, config: config, name: module, seed: seed,
                                        parameterLock: parameterLock)
        }
        if let lora {
            guard lora.a.shape == [lora.rank, layer.inFeatures], lora.b.shape == [layer.outFeatures, lora.rank] else {
                throw QLoraError.shapeMismatch(context: "adapter weights of '\(module)' (lora_A [r, in], lora_B [out, r]) vs its weight [\(layer.outFeatures), \(layer.inFeatures)]",
                                               expected: [lora.rank, layer.inFeatures, layer.outFeatures, lora.rank],
                                               actual: lora.a.shape + lora.b.shape)
            }
            try layer.setLoraWeights(a: lora.a, b: lora.b)
        }
        return layer
    }

    /// A layer config whose `scaling` is exactly the adapter's (PEFT computes it in double and
    /// rounds; alpha / r in float can differ by an ulp, so alpha is nudged until they agree).
    static func config(for lora: LoraModuleWeights) throws -> QLoraConfig {
        var config = QLoraConfig()
        config.rank = lora.rank
        config.useRSLoRA = false
        let alpha = lora.scaling * Float(lora.rank)
        config.alpha = [alpha, alpha.nextUp, alpha.nextDown].first { $0 / Float(lora.rank) == lora.scaling } ?? alpha
        try config.validate()
        return config
    }
}
