import Foundation

/// `qlora synth --config config.json -o DIR`: a random-weight Llama model of any shape, written
/// directly in the bitsandbytes 4-bit layout (the directory `LlamaBnbExport` writes, loadable by
/// `LlamaCheckpoint` and by transformers + bitsandbytes), for benchmarks at scales no real
/// checkpoint on this machine has.
///
/// Each projection is drawn as 4-bit data, never as floats: uniformly random codes and per-block
/// absmax values uniform in [0.75, 1.25] × 2.5 × `initializer_range` (so weights have roughly that
/// standard deviation), double-quantized like bitsandbytes when asked. Embeddings and an untied
/// lm_head are uniform with standard deviation `initializer_range`; norms are 1; biases 0. Plain
/// tensors use the config's `dtype`/`torch_dtype` (float32, float16 or bfloat16; default float32).
/// Every tensor has its own generator seeded by `seed` and its name, so the bytes depend only on
/// (config, seed, options). Memory: one tensor at a time (the writer spills to disk).
public enum LlamaSynth {
    @discardableResult
    public static func write(config configURL: URL, output: URL, seed: UInt64, options: QuantizeOptions,
                             computeDType: String = "float32", replace: Bool = false,
                             progress: ConversionProgress? = nil) throws -> ConversionSummary {
        try QLoraConfig.validateBlockSize(options.blockSize)
        let bytes: [UInt8]
        do { bytes = [UInt8](try Data(contentsOf: configURL)) } catch {
            throw QLoraError.io(file: configURL.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let json = try JSONValue.parse(bytes, file: configURL.path, field: "config.json")
        let config = try LlamaConfig.parse(json, source: configURL.path)
        if let q = json["quantization_config"], !q.isNull {
            throw QLoraError.invalidConfig(field: "\(configURL.path): quantization_config", reason: "must be absent: synth writes its own (from --quant-type/--block-size/--[no-]double-quant)")
        }
        var plain = SafeTensorsDType.f32
        for key in ["dtype", "torch_dtype"] {
            guard let v = json[key], !v.isNull else { continue }
            guard case let .string(s) = v, let t = [SafeTensorsDType.f32, .f16, .bf16].first(where: { $0.torchName == s }) else {
                throw QLoraError.invalidConfig(field: "\(configURL.path): \(key)", reason: "must be float32, float16 or bfloat16, got \(v)")
            }
            plain = t
            break
        }
        var std: Float = 0.02
        if let v = json["initializer_range"], !v.isNull {
            guard let d = v.doubleValue, d > 0, d.isFinite else {
                throw QLoraError.invalidConfig(field: "\(configURL.path): initializer_range", reason: "must be a positive number, got \(v)")
            }
            std = Float(d)
        }
        let configText = try BnbModelConfig.json(model: json, options: options, computeDType: computeDType, source: configURL.path)
        let staged = try StagedDirectory(destination: output, replace: replace)
        try staged.write("config.json", Data(configText.utf8))
        let writer = try SafeTensorsWriter(url: staged.file("model.safetensors"), metadata: ["format": "pt"])
        var summary = ConversionSummary()
        let tensors = LlamaBnbExport.tensorNames(config)
        for (i, t) in tensors.enumerated() {
            var rng = SplitMix64(seed: seed ^ fnv1a(t.name))
            if t.quantized {
                let before = writer.dataBytes
                let weight = try randomQuantized(t.shape, std: std, options: options, rng: &rng, name: t.name)
                try writer.addQuantized(t.name, weight, dtype: plain.torchName)
                summary.tensorsConverted += 1
                summary.convertedParameters += weight.count
                summary.convertedBytesAfter += writer.dataBytes - before
            } else {
                let n = t.shape.reduce(1, *)
                let values: [Float]
                if t.name.hasSuffix("norm.weight") { values = [Float](repeating: 1, count: n) }
                else if t.name.hasSuffix(".bias") { values = [Float](repeating: 0, count: n) }
                else { values = rng.uniform(n, bound: std * Float(3).squareRoot()) }
                try writer.add(t.name, dtype: plain, shape: t.shape, data: encode(values, plain))
                summary.tensorsCopied += 1
            }
            progress?(i + 1, tensors.count, t.name)
        }
        summary.fileBytesAfter = try writer.commit()
        try staged.commit()
        return summary
    }

    /// A random 4-bit tensor: random codes, random per-block absmax (double-quantized if asked).
    static func randomQuantized(_ shape: [Int], std: Float, options: QuantizeOptions, rng: inout SplitMix64, name: String) throws -> QuantizedTensor {
        let n = shape.reduce(1, *)
        var packed = [UInt8](repeating: 0, count: (n + 1) / 2)
        packed.withUnsafeMutableBytes { raw in
            var i = 0
            while i + 8 <= raw.count { raw.storeBytes(of: rng.next().littleEndian, toByteOffset: i, as: UInt64.self); i += 8 }
            let last = rng.next()
            for k in i..<raw.count { raw[k] = UInt8(truncatingIfNeeded: last >> (8 * UInt64(k - i))) }
        }
        if n % 2 == 1 { packed[packed.count - 1] &= 0xF0 }  // the unused low nibble is 0, as bitsandbytes pads
        let blocks = (n + options.blockSize - 1) / options.blockSize
        let absmax = rng.uniform(blocks, bound: 0.25).map { (1 + $0) * 2.5 * std }
        let statistics: QuantStatistics = options.doubleQuant ? .double(DoubleQuantState.quantize(absmax: absmax)) : .plain(absmax: absmax)
        return try QuantizedTensor(shape: shape, quantType: options.quantType, blockSize: options.blockSize, packed: packed,
                                   statistics: statistics, name: name)
    }

    static func encode(_ values: [Float], _ dtype: SafeTensorsDType) -> Data {
        switch dtype {
        case .f16: return AdapterMerge.encode(values) { Float16($0).bitPattern }
        case .bf16: return AdapterMerge.encode(values, AdapterMerge.bfloat16Bits)
        default: return values.withUnsafeBytes { Data($0) }
        }
    }

    /// FNV-1a of a name: a per-tensor seed that does not depend on the write order.
    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
