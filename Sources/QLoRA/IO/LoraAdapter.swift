import Foundation

/// The LoRA matrices of one module: y += scaling · (x·Aᵀ)·Bᵀ.
public struct LoraModuleWeights: Sendable, Equatable {
    /// [r, in]
    public var a: Tensor
    /// [out, r]
    public var b: Tensor
    public var scaling: Float
    public var rank: Int { a.shape[0] }
}

/// A PEFT LoRA adapter directory: adapter_model.safetensors with
/// `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r], plus
/// adapter_config.json.
public struct LoraAdapter: Sendable {
    public var config: LoraAdapterConfig
    /// Keyed by module path, e.g. "model.layers.0.mlp.gate_proj".
    public var modules: [String: LoraModuleWeights]

    static let weightsFile = "adapter_model.safetensors"
    static let configFile = "adapter_config.json"
    static let prefix = "base_model.model."

    /// Builds an adapter in code; scalings come from `config`. Shapes are validated like on reading.
    public init(config: LoraAdapterConfig, weights: [String: (a: Tensor, b: Tensor)]) throws {
        self.config = config
        modules = [:]
        for (module, w) in weights {
            try LoraAdapter.checkShapes(module, w.a.shape, w.b.shape, config: config, file: "adapter")
            modules[module] = LoraModuleWeights(a: w.a, b: w.b, scaling: config.scaling(for: module))
        }
    }

    /// Reads and validates an adapter directory.
    public init(directory: URL) throws {
        let configURL = directory.appendingPathComponent(LoraAdapter.configFile)
        guard let configData = FileManager.default.contents(atPath: configURL.path) else {
            throw QLoraError.io(file: configURL.path, reason: "cannot read the adapter config")
        }
        let config = try LoraAdapterConfig.parse([UInt8](configData), file: configURL.path)
        try self.init(config: config, file: SafeTensorsFile(url: directory.appendingPathComponent(LoraAdapter.weightsFile)))
    }

    /// Validates the weights of `file` against an already parsed config (the fuzz target's entry).
    init(config: LoraAdapterConfig, file: SafeTensorsFile) throws {
        self.config = config
        var a: [String: String] = [:], b: [String: String] = [:]
        for name in file.names {
            func bad(_ reason: String) -> QLoraError { .malformedFile(file: file.path, field: name, reason: reason) }
            guard name.hasPrefix(LoraAdapter.prefix) else { throw bad("expected a key starting with \"\(LoraAdapter.prefix)\"") }
            let rest = name.dropFirst(LoraAdapter.prefix.count)
            if rest.hasSuffix(".lora_A.weight") {
                a[String(rest.dropLast(".lora_A.weight".count))] = name
            } else if rest.hasSuffix(".lora_B.weight") {
                b[String(rest.dropLast(".lora_B.weight".count))] = name
            } else {
                throw QLoraError.unsupported("\(file.path): tensor '\(name)' (only lora_A / lora_B weights are supported)")
            }
        }
        modules = [:]
        for module in Set(a.keys).union(b.keys).sorted() {
            guard let aName = a[module], let bName = b[module] else {
                let missing = a[module] == nil ? "lora_A" : "lora_B"
                throw QLoraError.malformedFile(file: file.path, field: module, reason: "has no \(missing) weight")
            }
            let aT = try file.tensor(aName), bT = try file.tensor(bName)
            for (name, t) in [(aName, aT), (bName, bT)] {
                if let i = t.scalars.firstIndex(where: { !$0.isFinite }) {
                    throw QLoraError.malformedFile(file: file.path, field: name, reason: "non-finite value \(t.scalars[i]) at index \(i)")
                }
            }
            try LoraAdapter.checkShapes(module, aT.shape, bT.shape, config: config, file: file.path)
            if !config.targetModules.isEmpty, !config.targets(module) {
                throw QLoraError.malformedFile(file: file.path, field: module,
                                               reason: "not matched by target_modules \(config.targetModules) of \(LoraAdapter.configFile)")
            }
            modules[module] = LoraModuleWeights(a: aT, b: bT, scaling: config.scaling(for: module))
        }
    }

    /// A [r, in], B [out, r], r agreeing with each other and with the config (rank_pattern aware).
    static func checkShapes(_ module: String, _ a: [Int], _ b: [Int], config: LoraAdapterConfig, file: String) throws {
        func bad(_ reason: String) -> QLoraError { .malformedFile(file: file, field: module, reason: reason) }
        guard a.count == 2 else { throw bad("lora_A must be 2-D [r, in], got shape \(a)") }
        guard b.count == 2 else { throw bad("lora_B must be 2-D [out, r], got shape \(b)") }
        guard a[0] == b[1] else { throw bad("lora_A \(a) and lora_B \(b) disagree on the rank (\(a[0]) vs \(b[1]))") }
        let r = config.rank(for: module)
        guard a[0] == r else { throw bad("rank \(a[0]) differs from r = \(r) in the adapter config") }
        guard a[1] > 0, b[0] > 0 else { throw bad("empty lora_A \(a) or lora_B \(b)") }
    }

    /// Writes adapter_model.safetensors and adapter_config.json into `directory` (created if
    /// needed), each file atomically.
    public func write(to directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw QLoraError.io(file: directory.path, reason: "cannot create directory: \(error.localizedDescription)")
        }
        let writer = try SafeTensorsWriter(url: directory.appendingPathComponent(LoraAdapter.weightsFile), metadata: ["format": "pt"])
        for (module, w) in modules {
            try writer.add("\(LoraAdapter.prefix)\(module).lora_A.weight", tensor: w.a)
            try writer.add("\(LoraAdapter.prefix)\(module).lora_B.weight", tensor: w.b)
        }
        try writer.commit()
        try writeAtomically(Array(config.jsonText().utf8), to: directory.appendingPathComponent(LoraAdapter.configFile))
    }
}

/// Writes `bytes` to a temporary sibling of `url`, then renames it over `url`.
func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
    let temp = POSIXFile.siblingPath(of: url, suffix: "tmp")
    do {
        let out = try POSIXFile(creating: temp)
        try out.write(bytes)
        try out.sync()
        try out.closeFile()
        guard rename(temp, url.path) == 0 else { throw POSIXFile.error(url.path, "cannot rename \(temp) to it") }
    } catch {
        unlink(temp)
        throw error
    }
    try POSIXFile.syncDirectory(of: url.path)
}
