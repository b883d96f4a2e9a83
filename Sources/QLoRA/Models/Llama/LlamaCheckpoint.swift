import Foundation

/// The weights of a Llama model with transformers' names (`model.layers.0.self_attn.q_proj.weight`),
/// from any of the places a model comes in:
/// - a Hugging Face directory: `config.json` + `model.safetensors`, or shards listed by
///   `model.safetensors.index.json`; tensors in f32/f16/bf16, or linear weights already in the
///   transformers + bitsandbytes 4-bit layout (used as stored);
/// - a GGUF file of the llama architecture (each tensor dequantized exactly as ggml does, q/k rows
///   un-permuted to HF order; see `LlamaGGUFWeights`).
/// Floating-point linear weights become 4-bit at load with `quantization` (as `qlora quantize`).
public struct LlamaCheckpoint: Sendable {
    public let config: LlamaConfig
    /// The directory or GGUF file, for messages.
    public let path: String
    public let quantization: QuantizeOptions
    private let source: Source

    private enum Source: Sendable {
        case safetensors(shards: [BnbCheckpoint], shardOf: [String: Int])
        case gguf(LlamaGGUFWeights)
    }

    /// Opens `url`: a model directory or a `.gguf` file.
    public init(url: URL, quantization: QuantizeOptions = QuantizeOptions()) throws {
        try QLoraConfig.validateBlockSize(quantization.blockSize)
        self.quantization = quantization
        path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw QLoraError.io(file: url.path, reason: "no such file or directory (expected a model directory or a .gguf file)")
        }
        if !isDirectory.boolValue {
            let gguf = try GGUFFile(url: url)
            config = try LlamaConfig.parse(gguf: gguf)
            source = .gguf(try LlamaGGUFWeights(file: gguf))
            return
        }
        let configURL = url.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw QLoraError.io(file: configURL.path, reason: "missing: a model directory needs config.json")
        }
        config = try LlamaConfig.load(configJSON: configURL)
        let single = url.appendingPathComponent("model.safetensors"), index = url.appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: single.path) {
            let file = try BnbCheckpoint(url: single)
            source = .safetensors(shards: [file], shardOf: Dictionary(file.file.names.map { ($0, 0) }, uniquingKeysWith: { a, _ in a }))
        } else if FileManager.default.fileExists(atPath: index.path) {
            source = try Self.openShards(index: index, directory: url)
        } else {
            throw QLoraError.io(file: url.path, reason: "no model.safetensors or model.safetensors.index.json in the model directory")
        }
    }

    /// Shards named by the index's `weight_map` (tensor → file).
    private static func openShards(index: URL, directory: URL) throws -> Source {
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: index)) } catch {
            throw QLoraError.io(file: index.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let json = try JSONValue.parse(bytes, file: index.path, field: "index")
        guard let map = json["weight_map"], case let .object(entries) = map else {
            throw QLoraError.malformedFile(file: index.path, field: "weight_map", reason: "missing or not an object")
        }
        var files: [String] = [], fileIndex: [String: Int] = [:]
        for (_, v) in entries {
            guard case let .string(f) = v, !f.contains("/") else {
                throw QLoraError.malformedFile(file: index.path, field: "weight_map", reason: "every value must be a shard file name in the directory, got \(v)")
            }
            if fileIndex[f] == nil { fileIndex[f] = files.count; files.append(f) }
        }
        let shards = try files.map { try BnbCheckpoint(url: directory.appendingPathComponent($0)) }
        var shardOf: [String: Int] = [:]
        for (i, shard) in shards.enumerated() { for name in shard.file.names where shardOf[name] == nil { shardOf[name] = i } }
        for (name, v) in entries {
            guard case let .string(f) = v, let i = fileIndex[f], shards[i].file.contains(name) else {
                throw QLoraError.malformedFile(file: index.path, field: "weight_map.\(name)", reason: "the shard it names does not hold this tensor")
            }
        }
        return .safetensors(shards: shards, shardOf: shardOf)
    }

    /// The tensor names the checkpoint offers (HF names), for suggestions.
    public var names: [String] {
        switch source {
        case let .safetensors(_, shardOf): return shardOf.keys.sorted()
        case let .gguf(w): return w.hfNames
        }
    }

    public func contains(_ name: String) -> Bool {
        switch source {
        case let .safetensors(_, shardOf): return shardOf[name] != nil
        case let .gguf(w): return LlamaGGUFNames.ggufName(forHF: name).map { w.file.contains($0) } ?? false
        }
    }

    func missing(_ name: String, neededBy: String) -> QLoraError {
        .missingTensor(file: path, name: name, neededBy: neededBy, suggestions: NameSuggestions.near(name, in: names))
    }

    /// The logical shape of a tensor (a 4-bit parameter's quant-state shape), without reading it.
    public func shape(_ name: String, neededBy: String) throws -> [Int] {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        switch source {
        case let .safetensors(shards, shardOf):
            let shard = shards[shardOf[name]!]
            return shard.isQuantized(name) ? try shard.quantState(name).shape : try shard.file.info(name).shape
        case let .gguf(w): return try w.file.info(LlamaGGUFNames.ggufName(forHF: name)!).shape
        }
    }

    /// A full-precision tensor as f32 (a 4-bit parameter is dequantized).
    public func tensor(_ name: String, neededBy: String) throws -> Tensor {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        switch source {
        case let .safetensors(shards, shardOf):
            defer { Self.releasePages(name, of: shards[shardOf[name]!]) }
            return try shards[shardOf[name]!].tensor(name, threads: quantization.threads)
        case let .gguf(w): return try w.tensor(name, threads: quantization.threads)
        }
    }

    /// The same, checked against the shape the config needs.
    public func tensor(_ name: String, shape: [Int], neededBy: String) throws -> Tensor {
        let t = try tensor(name, neededBy: neededBy)
        try check(name, t.shape, shape)
        return t
    }

    /// A linear weight [out, in] as 4-bit: a bitsandbytes parameter as stored, else quantized now.
    public func quantizedWeight(_ name: String, neededBy: String) throws -> QuantizedTensor {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        if case let .safetensors(shards, shardOf) = source, shards[shardOf[name]!].isQuantized(name) {
            defer { Self.releasePages(name, of: shards[shardOf[name]!]) }
            return try shards[shardOf[name]!].quantized(name)
        }
        let t = try tensor(name, neededBy: neededBy)
        guard t.rank == 2 else {
            throw QLoraError.malformedFile(file: path, field: name, reason: "a linear weight must be [out, in], got \(t.shape)")
        }
        return try QuantizedTensor.quantize(t, quantType: quantization.quantType, blockSize: quantization.blockSize,
                                            doubleQuant: quantization.doubleQuant, name: name, threads: quantization.threads)
    }

    /// The same, checked against the shape the config needs.
    public func quantizedWeight(_ name: String, shape: [Int], neededBy: String) throws -> QuantizedTensor {
        try check(name, try self.shape(name, neededBy: neededBy), shape)
        return try quantizedWeight(name, neededBy: neededBy)
    }

    /// Drops the mapped pages of a tensor just copied out (and of its 4-bit companions), so a
    /// loaded model is resident once, not twice (mapped file + copy) at the peak of a 7B load.
    private static func releasePages(_ name: String, of shard: BnbCheckpoint) {
        shard.file.releasePages(name)
        for s in BnbCheckpoint.auxSuffixes { shard.file.releasePages("\(name).\(s)") }
    }

    /// A plain tensor of a safetensors checkpoint as stored (dtype, shape, bytes), for exports that
    /// keep it in its dtype; nil for a GGUF file or a 4-bit parameter.
    public func storedPlainTensor(_ name: String) throws -> (dtype: SafeTensorsDType, shape: [Int], data: Data)? {
        guard case let .safetensors(shards, shardOf) = source, let i = shardOf[name], !shards[i].isQuantized(name) else { return nil }
        let info = try shards[i].file.info(name)
        return (info.dtype, info.shape, try shards[i].file.rawData(name))
    }

    /// The torch dtype name the original weight `name` had: its safetensors dtype, a 4-bit
    /// parameter's recorded dtype, "float32" for a GGUF tensor (transformers dequantizes to f32).
    public func sourceDType(_ name: String) throws -> String {
        guard case let .safetensors(shards, shardOf) = source, let i = shardOf[name] else { return "float32" }
        return shards[i].isQuantized(name) ? try shards[i].quantState(name).dtype : try shards[i].file.info(name).dtype.torchName
    }

    /// The named dimensions Graphs/llama.json uses, from the config.
    public var graphDims: [String: Int] {
        ["layers": config.layers, "hidden": config.hiddenSize, "intermediate": config.intermediateSize, "heads": config.heads,
         "kv_heads": config.kvHeads, "head_dim": config.headDim, "vocab": config.vocabSize]
    }

    private func check(_ name: String, _ actual: [Int], _ expected: [Int]) throws {
        guard actual == expected else {
            throw QLoraError.malformedFile(file: path, field: name, reason: "shape \(actual) disagrees with the config, which needs \(expected)")
        }
    }
}
