import Foundation

/// What `AdapterMerge.merge` writes.
public enum MergeFormat: String, Sendable, CaseIterable {
    case f32, f16, bf16, nf4, fp4

    var quantType: QuantType? {
        switch self {
        case .nf4: return .nf4
        case .fp4: return .fp4
        default: return nil
        }
    }
}

/// The error re-quantizing a merged weight adds, measured on outputs: y = x·W'ᵀ with the merged
/// f32 W' against the re-quantized one, for random inputs.
public struct RequantizationError: Sendable {
    public var module: String
    public var maxAbs: Float
    public var rms: Float
    /// max |y| of the f32 merged outputs, to read the error against.
    public var maxOutput: Float
}

public struct MergeSummary: Sendable {
    public var mergedModules: [String] = []
    public var tensorsWritten = 0
    public var requantization: [RequantizationError] = []
    public var fileBytes = 0
}

/// Merges a LoRA adapter into its base the QLoRA way: W' = dequant(W₄) + scaling·B·A.
///
/// The adapter was trained against the dequantized 4-bit weight, not the original 16-bit one:
/// B·A learned to correct (among other things) the quantization error of W₄, so adding it to the
/// original weight double-counts that correction and gives a model that matches neither. A plain
/// (unquantized) checkpoint is therefore quantized first with `quantization` — the settings
/// training quantized it with at load — and merged into that.
///
/// f32/f16/bf16 write every weight dequantized (the transformers layout) and every other tensor
/// converted to that dtype; nf4/fp4 write the bitsandbytes 4-bit layout: merged weights are
/// re-quantized (block size and double quant of the base weight), untouched 4-bit weights are
/// copied (re-quantized only to change their type), other tensors copied unchanged.
public enum AdapterMerge {
    public static func merge(weights url: URL, adapter: LoraAdapter, output: URL, format: MergeFormat,
                             quantization: QuantizeOptions = QuantizeOptions(), threads: Int = Runtime.defaultThreads,
                             progress: ConversionProgress? = nil) throws -> MergeSummary {
        let checkpoint = try CheckpointWeights(url: url, quantization: quantization)
        let file = checkpoint.checkpoint.file
        let quantized = Set(checkpoint.checkpoint.quantizedNames)
        for module in adapter.modules.keys.sorted() where !checkpoint.contains("\(module).weight") {
            throw QLoraError.invalidArgument("the adapter has module '\(module)', but \(url.path) has no '\(module).weight' to merge it into")
        }
        var summary = MergeSummary()
        let writer = try SafeTensorsWriter(url: output, metadata: file.metadata)
        let names = checkpoint.checkpoint.quantizedNames + checkpoint.checkpoint.plainNames
        for (i, name) in names.enumerated() {
            let module = name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : nil
            if let module, let lora = adapter.modules[module] {
                let base = try checkpoint.quantizedWeight(name, neededBy: "merging the adapter's '\(module)'")
                let merged = try mergedWeight(base.dequantize(threads: threads), lora, module: module)
                summary.mergedModules.append(module)
                if let type = format.quantType {
                    let requantized = try QuantizedTensor.quantize(merged, quantType: type, blockSize: base.blockSize,
                                                                   doubleQuant: base.isDoubleQuantized, name: name, threads: threads)
                    try writer.addQuantized(name, requantized, dtype: dtypeName(file, name, quantized: quantized.contains(name)))
                    summary.requantization.append(outputError(module, merged, requantized.dequantize(threads: threads)))
                } else {
                    try add(writer, name, merged, format)
                }
            } else if quantized.contains(name) {
                let weight = try checkpoint.checkpoint.quantized(name)
                if let type = format.quantType {
                    let out = weight.quantType == type ? weight
                        : try QuantizedTensor.quantize(weight.dequantize(threads: threads), quantType: type, blockSize: weight.blockSize,
                                                       doubleQuant: weight.isDoubleQuantized, name: name, threads: threads)
                    try writer.addQuantized(name, out, dtype: dtypeName(file, name, quantized: true))
                } else {
                    try add(writer, name, weight.dequantize(threads: threads), format)
                }
            } else {
                let info = try file.info(name)
                if format.quantType == nil, info.dtype.isFloatingPoint {
                    try add(writer, name, file.tensor(name), format)
                } else {
                    try writer.add(name, dtype: info.dtype, shape: info.shape, data: file.rawData(name))
                }
            }
            summary.tensorsWritten += 1
            progress?(i + 1, names.count, name)
        }
        summary.fileBytes = try writer.commit()
        return summary
    }

    /// W + scaling·B·A, each element summed over r in double and rounded once.
    public static func mergedWeight(_ w: Tensor, _ lora: LoraModuleWeights, module: String) throws -> Tensor {
        let out = w.shape[0], inF = w.shape[1], r = lora.rank
        guard lora.a.shape == [r, inF], lora.b.shape == [out, r] else {
            throw QLoraError.shapeMismatch(context: "adapter '\(module)' (lora_A [r, in], lora_B [out, r]) vs its weight \(w.shape)",
                                           expected: [r, inF, out, r], actual: lora.a.shape + lora.b.shape)
        }
        let a = lora.a.scalars, b = lora.b.scalars, s = Double(lora.scaling)
        var m = w.scalars
        for o in 0..<out {
            for i in 0..<inF {
                var ba = 0.0
                for k in 0..<r { ba += Double(b[o * r + k]) * Double(a[k * inF + i]) }
                m[o * inF + i] = Float(Double(m[o * inF + i]) + s * ba)
            }
        }
        return try Tensor(shape: w.shape, scalars: m)
    }

    /// Output error of `requantized` against `merged` on 16 seeded random inputs in [-1, 1).
    static func outputError(_ module: String, _ merged: Tensor, _ requantized: Tensor) -> RequantizationError {
        let out = merged.shape[0], inF = merged.shape[1], rows = 16
        var rng = SplitMix64(seed: 0x6D65_7267_65)
        let x = rng.uniform(rows * inF, bound: 1)
        var maxAbs: Float = 0, maxOutput: Float = 0, sumSquares = 0.0
        for row in 0..<rows {
            for o in 0..<out {
                var y1 = 0.0, y2 = 0.0
                for i in 0..<inF {
                    let xv = Double(x[row * inF + i])
                    y1 += xv * Double(merged.scalars[o * inF + i])
                    y2 += xv * Double(requantized.scalars[o * inF + i])
                }
                let d = Float(y2 - y1)
                maxAbs = max(maxAbs, abs(d))
                maxOutput = max(maxOutput, Float(abs(y1)))
                sumSquares += Double(d) * Double(d)
            }
        }
        return RequantizationError(module: module, maxAbs: maxAbs, rms: Float((sumSquares / Double(rows * out)).squareRoot()), maxOutput: maxOutput)
    }

    static func dtypeName(_ file: SafeTensorsFile, _ name: String, quantized: Bool) throws -> String {
        if !quantized, let info = try? file.info(name), info.dtype.isFloatingPoint { return info.dtype.torchName }
        return (try? BnbCheckpoint(file: file).quantState(name).dtype) ?? "float32"
    }

    static func add(_ writer: SafeTensorsWriter, _ name: String, _ t: Tensor, _ format: MergeFormat) throws {
        switch format {
        case .f16:
            try writer.add(name, dtype: .f16, shape: t.shape, data: encode(t.scalars) { Float16($0).bitPattern })
        case .bf16:
            try writer.add(name, dtype: .bf16, shape: t.shape, data: encode(t.scalars, bfloat16Bits))
        default:
            try writer.add(name, tensor: t)
        }
    }

    /// bfloat16 with round-to-nearest-even (NaN kept quiet), as torch's `.to(torch.bfloat16)`.
    static func bfloat16Bits(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        if f.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }

    static func encode(_ values: [Float], _ f: (Float) -> UInt16) -> Data {
        var data = Data(count: values.count * 2)
        data.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: f(v).littleEndian, toByteOffset: i * 2, as: UInt16.self) }
        }
        return data
    }
}
