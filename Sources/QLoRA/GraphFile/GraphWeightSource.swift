/// Where a graph file's ops get their weights: a safetensors checkpoint (`CheckpointWeights`) or
/// a whole model (`LlamaCheckpoint`: a model directory or GGUF file, which also gives the graph its
/// dimensions and constants such as `rms_norm_eps` and `rope_theta`).
public protocol GraphWeightSource: Sendable {
    /// The file or directory, for messages.
    var path: String { get }
    /// Every tensor name (for "did you mean" suggestions).
    var tensorNames: [String] { get }
    func contains(_ name: String) -> Bool
    /// The logical shape (a 4-bit parameter's quant-state shape).
    func shape(_ name: String, neededBy: String) throws -> [Int]
    /// A linear weight as 4-bit: as stored, or quantized now.
    func quantizedWeight(_ name: String, neededBy: String) throws -> QuantizedTensor
    /// A full-precision tensor as f32.
    func tensor(_ name: String, neededBy: String) throws -> Tensor
    /// The model's config when the source is a whole model (nil for a plain checkpoint).
    var modelConfig: LlamaConfig? { get }
}

extension GraphWeightSource {
    public var modelConfig: LlamaConfig? { nil }

    /// A missing tensor, naming the graph op that needs it and the nearest names the source has.
    func missingTensor(_ name: String, neededBy: String) -> QLoraError {
        .missingTensor(file: path, name: name, neededBy: neededBy, suggestions: NameSuggestions.near(name, in: tensorNames))
    }
}

extension CheckpointWeights: GraphWeightSource {
    public var tensorNames: [String] { checkpoint.file.names }
}

extension LlamaCheckpoint: GraphWeightSource {
    public var tensorNames: [String] { names }
    public var modelConfig: LlamaConfig? { config }
}
