import Foundation

/// The weights a graph file's ops read: a safetensors checkpoint that may hold bitsandbytes 4-bit
/// parameters (used as they are) and plain f32/f16/bf16 tensors (linear weights among them are
/// quantized at load with `quantization`). Tensors the graph does not name are never read.
public struct CheckpointWeights: Sendable {
    public let checkpoint: BnbCheckpoint
    public let quantization: QuantizeOptions
    public var path: String { checkpoint.file.path }

    public init(url: URL, quantization: QuantizeOptions = QuantizeOptions()) throws {
        try QLoraConfig.validateBlockSize(quantization.blockSize)
        checkpoint = try BnbCheckpoint(url: url)
        self.quantization = quantization
    }

    public func contains(_ name: String) -> Bool { checkpoint.file.contains(name) }

    /// A missing tensor, naming the graph op that needs it and the nearest names the file has.
    func missing(_ name: String, neededBy: String) -> QLoraError {
        .missingTensor(file: path, name: name, neededBy: neededBy, suggestions: NameSuggestions.near(name, in: checkpoint.file.names))
    }

    /// The logical shape of a weight: the quant-state shape of a 4-bit parameter, else the stored shape.
    public func shape(_ name: String, neededBy: String) throws -> [Int] {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        if checkpoint.isQuantized(name) { return try checkpoint.quantState(name).shape }
        return try checkpoint.file.info(name).shape
    }

    /// A linear weight as 4-bit: read as it is, or quantized now from a floating-point tensor.
    public func quantizedWeight(_ name: String, neededBy: String) throws -> QuantizedTensor {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        if checkpoint.isQuantized(name) { return try checkpoint.quantized(name) }
        let info = try checkpoint.file.info(name)
        guard info.dtype.isFloatingPoint else {
            throw QLoraError.malformedFile(file: path, field: "\(name).dtype",
                                           reason: "expected a floating-point or bitsandbytes 4-bit weight, got \(info.dtype.rawValue)")
        }
        return try QuantizedTensor.quantize(checkpoint.file.tensor(name), quantType: quantization.quantType,
                                            blockSize: quantization.blockSize, doubleQuant: quantization.doubleQuant,
                                            name: name, threads: quantization.threads)
    }

    /// A full-precision tensor (bias, norm weight); a 4-bit parameter is dequantized.
    public func tensor(_ name: String, neededBy: String) throws -> Tensor {
        guard contains(name) else { throw missing(name, neededBy: neededBy) }
        return try checkpoint.tensor(name, threads: quantization.threads)
    }
}
