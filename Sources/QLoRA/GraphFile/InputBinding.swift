extension GraphDefinition {
    /// Binds the declared dimensions of the inputs the caller gave shapes for; returns the batch
    /// dimensions ("..."): the actual inputs', else [tokens].
    func bindInputs(_ actual: [String: [Int]], _ g: Graph) throws -> [Int] {
        var batch: [Int]?, batchFrom = ""
        for input in inputs {
            guard let shape = actual[input.name] else { continue }
            let declared = input.shape
            let fits = declared.batch ? shape.count >= declared.dims.count : shape.count == declared.dims.count
            guard fits else {
                throw mismatch("\(input.path).shape", "shape disagreement: input '\(input.name)' has shape \(shape) but the graph declares \(declared)")
            }
            let lead = Array(shape.prefix(shape.count - declared.dims.count))
            if declared.batch {
                if let batch, lead != batch {
                    throw mismatch("\(input.path).shape", "input '\(input.name)' has batch dimensions \(lead) but input '\(batchFrom)' has \(batch)")
                }
                batch = lead
                batchFrom = input.name
            }
            for (d, n) in zip(declared.dims, shape.suffix(declared.dims.count)) {
                if let disagreement = g.bindDimension(d.ir, n, source: "input '\(input.name)' of shape \(shape)") {
                    throw mismatch("\(input.path).shape", disagreement)
                }
            }
        }
        let tokens = g.resolveDimension(SymbolicDimension.named("tokens"))
        return batch ?? [tokens >= 0 ? tokens : 1]
    }
}
