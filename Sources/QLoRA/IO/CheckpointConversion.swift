import Foundation

/// What `CheckpointConversion.quantize` quantizes and how.
public struct QuantizeOptions: Sendable {
    public var quantType: QuantType = .nf4
    public var blockSize: Int = 64
    public var doubleQuant: Bool = true
    /// When set, only tensors whose name contains a match are quantized (this replaces the
    /// default exclusion of embeddings, lm_head and norms).
    public var include: String?
    /// Tensors whose name contains a match are never quantized.
    public var exclude: String?
    public var threads: Int = Runtime.defaultThreads

    /// Names left in full precision when no `include` is given.
    public static let defaultExclude = "embed_tokens|lm_head|norm"

    public init() {}
}

/// Decides which tensors get quantized: 2-D floating-point tensors named `*.weight` that pass
/// the include/exclude filters (regex "contains" matches).
public struct TensorSelector {
    private let include: Regex<AnyRegexOutput>?
    private let excludes: [Regex<AnyRegexOutput>]

    /// Throws `invalidArgument` naming the option whose pattern does not compile.
    public init(include: String?, exclude: String?) throws {
        func compile(_ pattern: String, _ option: String) throws -> Regex<AnyRegexOutput> {
            do { return try Regex(pattern) } catch {
                throw QLoraError.invalidArgument("\(option) \"\(pattern)\" is not a valid regular expression")
            }
        }
        self.include = try include.map { try compile($0, "--include") }
        var excludes = try exclude.map { [try compile($0, "--exclude")] } ?? []
        if include == nil { excludes.append(try compile(QuantizeOptions.defaultExclude, "default exclude")) }
        self.excludes = excludes
    }

    public func selects(_ info: SafeTensorInfo) -> Bool {
        guard info.dtype.isFloatingPoint, info.shape.count == 2, info.elementCount > 0,
              info.name.hasSuffix(".weight") else { return false }
        if let include, !info.name.contains(include) { return false }
        return !excludes.contains { info.name.contains($0) }
    }
}

/// What a conversion did, for the CLI summary.
public struct ConversionSummary: Sendable, Equatable {
    public var tensorsConverted = 0
    public var tensorsCopied = 0
    /// Elements of the converted tensors.
    public var convertedParameters = 0
    /// Bytes the converted tensors occupy in the input and in the output (all their entries).
    public var convertedBytesBefore = 0
    public var convertedBytesAfter = 0
    public var fileBytesBefore = 0
    public var fileBytesAfter = 0

    /// Storage bits per converted parameter in the output (incl. statistics, maps and JSON).
    public var bitsPerParameter: Double {
        convertedParameters == 0 ? 0 : Double(convertedBytesAfter * 8) / Double(convertedParameters)
    }
}

/// Called after each tensor: (tensors done, tensors in total, name of the last one).
public typealias ConversionProgress = (Int, Int, String) -> Void

/// File-to-file conversions behind `qlora quantize` and `qlora dequantize`. Both stream tensor by
/// tensor (input mapped, output spilled), and write the output atomically: on any error no file
/// appears at `output`.
public enum CheckpointConversion {
    /// Quantizes the selected tensors of a plain safetensors file to the bitsandbytes 4-bit
    /// layout and copies every other tensor unchanged (same dtype and bytes).
    public static func quantize(input: URL, output: URL, options: QuantizeOptions,
                                progress: ConversionProgress? = nil) throws -> ConversionSummary {
        try QLoraConfig.validateBlockSize(options.blockSize)
        let selector = try TensorSelector(include: options.include, exclude: options.exclude)
        let file = try SafeTensorsFile(url: input)
        if let name = file.names.first(where: { $0.contains(".quant_state.bitsandbytes__") }) {
            throw QLoraError.invalidArgument("\(input.path) is already a bitsandbytes 4-bit checkpoint ('\(name)'); dequantize it first")
        }
        var summary = ConversionSummary()
        summary.fileBytesBefore = try fileSize(input)
        let writer = try SafeTensorsWriter(url: output, metadata: file.metadata)
        for (i, name) in file.names.enumerated() {
            let info = try file.info(name)
            if selector.selects(info) {
                let before = writer.dataBytes
                // F32 is quantized where it lies in the mapping; other dtypes widen to one f32 copy.
                let quantize = { (w: UnsafeBufferPointer<Float>) in
                    try QuantizedTensor.quantize(scalars: w, shape: info.shape, quantType: options.quantType,
                                                 blockSize: options.blockSize, doubleQuant: options.doubleQuant,
                                                 name: name, threads: options.threads)
                }
                let weight = try file.withFloatsInPlace(name, quantize)
                    ?? file.floats(name).withUnsafeBufferPointer(quantize)
                try writer.addQuantized(name, weight, dtype: info.dtype.torchName)
                summary.tensorsConverted += 1
                summary.convertedParameters += info.elementCount
                summary.convertedBytesBefore += info.byteCount
                summary.convertedBytesAfter += writer.dataBytes - before
            } else {
                try writer.add(name, dtype: info.dtype, shape: info.shape, data: file.rawData(name))
                summary.tensorsCopied += 1
            }
            file.releasePages(name)
            progress?(i + 1, file.names.count, name)
        }
        summary.fileBytesAfter = try writer.commit()
        return summary
    }

    /// Replaces every 4-bit parameter of a bitsandbytes checkpoint by one F32 tensor with the
    /// quant-state shape (auxiliary tensors dropped) and copies the plain tensors unchanged.
    public static func dequantize(input: URL, output: URL, threads: Int = Runtime.defaultThreads,
                                  progress: ConversionProgress? = nil) throws -> ConversionSummary {
        let checkpoint = try BnbCheckpoint(url: input)
        let file = checkpoint.file
        var summary = ConversionSummary()
        summary.fileBytesBefore = try fileSize(input)
        let writer = try SafeTensorsWriter(url: output, metadata: file.metadata)
        let total = checkpoint.quantizedNames.count + checkpoint.plainNames.count
        var done = 0
        for name in checkpoint.quantizedNames {
            let weight = try checkpoint.quantized(name)
            summary.convertedBytesBefore += weight.memoryBytes
            try writer.add(name, tensor: weight.dequantize(threads: threads))
            summary.tensorsConverted += 1
            summary.convertedParameters += weight.count
            summary.convertedBytesAfter += weight.count * 4
            for s in ["", ".absmax", ".nested_absmax"] { file.releasePages(name + s) }
            done += 1
            progress?(done, total, name)
        }
        for name in checkpoint.plainNames {
            let info = try file.info(name)
            try writer.add(name, dtype: info.dtype, shape: info.shape, data: file.rawData(name))
            summary.tensorsCopied += 1
            file.releasePages(name)
            done += 1
            progress?(done, total, name)
        }
        summary.fileBytesAfter = try writer.commit()
        return summary
    }

    static func fileSize(_ url: URL) throws -> Int {
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
            return (attributes[.size] as? NSNumber)?.intValue ?? 0
        } catch {
            throw QLoraError.io(file: url.path, reason: "cannot stat: \(error.localizedDescription)")
        }
    }
}
