import CQLoRAKernels

/// Double-quantized absmax statistics (bitsandbytes `compress_statistics=True`, `state2`).
public struct DoubleQuantState: Sendable, Equatable {
    /// One 8-bit index into `code2` per 4-bit block.
    public var quantizedAbsmax: [UInt8]
    /// One f32 scale per `blockSize2` blocks.
    public var absmax2: [Float]
    /// The 256-entry signed dynamic code (bitsandbytes `create_dynamic_map`).
    public var code2: [Float]
    /// mean(absmax), added back after decoding.
    public var offset: Float
    /// Blocks per `absmax2` entry (256 in bitsandbytes).
    public var blockSize2: Int

    public init(quantizedAbsmax: [UInt8], absmax2: [Float], code2: [Float], offset: Float, blockSize2: Int = 256) {
        self.quantizedAbsmax = quantizedAbsmax
        self.absmax2 = absmax2
        self.code2 = code2
        self.offset = offset
        self.blockSize2 = blockSize2
    }

    /// Decoded absmax: code2[q] · absmax2[i / blockSize2] + offset (f32 multiply, f32 add).
    public func decodedAbsmax() -> [Float] {
        var out = [Float](repeating: 0, count: quantizedAbsmax.count)
        quantizedAbsmax.withUnsafeBufferPointer { q in
            absmax2.withUnsafeBufferPointer { a2 in
                code2.withUnsafeBufferPointer { c2 in
                    out.withUnsafeMutableBufferPointer { o in
                        cq_double_dequantize(q.baseAddress, Int64(q.count), Int32(blockSize2), c2.baseAddress,
                                             a2.baseAddress, offset, o.baseAddress)
                    }
                }
            }
        }
        return out
    }
}

/// Per-block scale statistics of a 4-bit weight.
public enum QuantStatistics: Sendable, Equatable {
    /// One f32 absmax per block.
    case plain(absmax: [Float])
    /// 8-bit double-quantized absmax.
    case double(DoubleQuantState)

    public var blockCount: Int {
        switch self {
        case let .plain(absmax): return absmax.count
        case let .double(state): return state.quantizedAbsmax.count
        }
    }

    /// Bytes the statistics occupy.
    public var memoryBytes: Int {
        switch self {
        case let .plain(absmax): return absmax.count * 4
        case let .double(s): return s.quantizedAbsmax.count + s.absmax2.count * 4 + s.code2.count * 4 + 4
        }
    }
}

/// A frozen 4-bit weight in the bitsandbytes layout: the flattened row-major weight cut into
/// flat blocks of `blockSize` elements (blocks cross rows), two codes per byte with element 2i in
/// the high nibble.
public struct QuantizedTensor: Sendable, Equatable {
    /// Logical shape, [out_features, in_features] for a linear weight.
    public let shape: [Int]
    public let quantType: QuantType
    public let blockSize: Int
    /// (count + 1) / 2 bytes.
    public let packed: [UInt8]
    public let statistics: QuantStatistics

    /// Assembles a tensor from its parts (e.g. read from a checkpoint), checking every size.
    public init(shape: [Int], quantType: QuantType, blockSize: Int, packed: [UInt8],
                statistics: QuantStatistics, name: String = "weight") throws {
        try QLoraConfig.validateBlockSize(blockSize)
        let count = try Tensor.elementCount(shape)
        guard count > 0 else { throw QLoraError.quantization(tensor: name, reason: "empty shape \(shape)") }
        guard packed.count == (count + 1) / 2 else {
            throw QLoraError.shapeMismatch(context: "\(name): packed 4-bit bytes", expected: [(count + 1) / 2],
                                           actual: [packed.count])
        }
        let blocks = (count + blockSize - 1) / blockSize
        guard statistics.blockCount == blocks else {
            throw QLoraError.shapeMismatch(context: "\(name): absmax blocks", expected: [blocks],
                                           actual: [statistics.blockCount])
        }
        if case let .double(s) = statistics {
            guard s.blockSize2 > 0 else {
                throw QLoraError.quantization(tensor: name, reason: "nested block size \(s.blockSize2) must be > 0")
            }
            let blocks2 = (blocks + s.blockSize2 - 1) / s.blockSize2
            guard s.absmax2.count == blocks2 else {
                throw QLoraError.shapeMismatch(context: "\(name): nested absmax", expected: [blocks2],
                                               actual: [s.absmax2.count])
            }
            guard s.code2.count == 256 else {
                throw QLoraError.shapeMismatch(context: "\(name): nested quant map", expected: [256],
                                               actual: [s.code2.count])
            }
        }
        self.shape = shape
        self.quantType = quantType
        self.blockSize = blockSize
        self.packed = packed
        self.statistics = statistics
    }

    /// Number of logical elements.
    public var count: Int { shape.reduce(1, *) }
    public var blockCount: Int { (count + blockSize - 1) / blockSize }
    public var isDoubleQuantized: Bool { if case .double = statistics { return true } else { return false } }

    /// Packed codes plus statistics.
    public var memoryBytes: Int { packed.count + statistics.memoryBytes }

    /// Storage bits per weight element: 4 + statistics (4.5 for NF4 with block 64 and f32 absmax;
    /// 4 + 8/64 + 32/(64·256) ≈ 4.127 with double quantization).
    public var bitsPerParameter: Double {
        let perBlock: Double
        switch statistics {
        case .plain: perBlock = 32
        case let .double(s): perBlock = 8 + 32 / Double(s.blockSize2)
        }
        return 4 + perBlock / Double(blockSize)
    }

    /// The 16-entry codebook of this quant type.
    public var codebook: [Float] { QuantizedTensor.codebook(quantType) }

    public static func codebook(_ type: QuantType) -> [Float] {
        let p = cq_codebook(type == .nf4 ? CQ_NF4 : CQ_FP4)!
        return (0..<16).map { p[$0] }
    }

    /// Per-block absmax as f32 (decoded when double-quantized).
    public func absmaxValues() -> [Float] {
        switch statistics {
        case let .plain(absmax): return absmax
        case let .double(state): return state.decodedAbsmax()
        }
    }

    /// Calls `body` with the C view of this weight; pointers are valid only inside `body`.
    public func withKernelView<R>(_ body: (UnsafePointer<cq_qweight>) throws -> R) rethrows -> R {
        let rows = shape.count >= 2 ? shape.dropLast().reduce(1, *) : 1
        let cols = shape.last ?? 1
        let code = cq_codebook(quantType == .nf4 ? CQ_NF4 : CQ_FP4)
        return try packed.withUnsafeBufferPointer { p in
            switch statistics {
            case let .plain(absmax):
                return try absmax.withUnsafeBufferPointer { a in
                    var view = cq_qweight(packed: p.baseAddress, rows: Int64(rows), cols: Int64(cols),
                                          block_size: Int32(blockSize), codebook: code, absmax: a.baseAddress,
                                          qabsmax: nil, code2: nil, absmax2: nil, offset: 0, block_size2: 0, paired: 0)
                    return try body(&view)
                }
            case let .double(s):
                return try s.quantizedAbsmax.withUnsafeBufferPointer { q in
                    try s.code2.withUnsafeBufferPointer { c2 in
                        try s.absmax2.withUnsafeBufferPointer { a2 in
                            var view = cq_qweight(packed: p.baseAddress, rows: Int64(rows), cols: Int64(cols),
                                                  block_size: Int32(blockSize), codebook: code, absmax: nil,
                                                  qabsmax: q.baseAddress, code2: c2.baseAddress,
                                                  absmax2: a2.baseAddress, offset: s.offset,
                                                  block_size2: Int32(s.blockSize2), paired: 0)
                            return try body(&view)
                        }
                    }
                }
            }
        }
    }
}
