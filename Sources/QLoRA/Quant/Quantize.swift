import CQLoRAKernels

extension QuantizedTensor {
    /// Quantizes an f32 tensor exactly as bitsandbytes 0.50.2 does (see the reference manifest).
    /// Throws `quantization` naming `name` and the first bad index for NaN/Inf, `invalidConfig`
    /// for an unsupported block size.
    public static func quantize(_ tensor: Tensor, quantType: QuantType = .nf4, blockSize: Int = 64,
                                doubleQuant: Bool = true, name: String = "weight",
                                threads: Int = Runtime.defaultThreads) throws -> QuantizedTensor {
        try tensor.scalars.withUnsafeBufferPointer {
            try quantize(scalars: $0, shape: tensor.shape, quantType: quantType, blockSize: blockSize,
                         doubleQuant: doubleQuant, name: name, threads: threads)
        }
    }

    /// `quantize(_:)` on f32 values in place (e.g. a mapped checkpoint's), without a copy.
    static func quantize(scalars w: UnsafeBufferPointer<Float>, shape: [Int], quantType: QuantType, blockSize: Int,
                         doubleQuant: Bool, name: String, threads: Int) throws -> QuantizedTensor {
        try QLoraConfig.validateBlockSize(blockSize)
        let n = w.count
        guard n > 0 else { throw QLoraError.quantization(tensor: name, reason: "tensor is empty (shape \(shape))") }
        let blocks = (n + blockSize - 1) / blockSize
        var bad: Int64 = -1
        var status: Int32 = 0
        var absmax: [Float] = []
        // The kernel writes every packed byte and absmax entry (garbage only when it fails).
        let packed = [UInt8](unsafeUninitializedCapacity: (n + 1) / 2) { p, packedCount in
            absmax = [Float](unsafeUninitializedCapacity: blocks) { a, absmaxCount in
                status = cq_quantize_4bit(w.baseAddress, Int64(n), Int32(blockSize), quantType == .nf4 ? CQ_NF4 : CQ_FP4,
                                          p.baseAddress, a.baseAddress, &bad, Int32(max(1, threads)))
                absmaxCount = blocks
            }
            packedCount = (n + 1) / 2
        }
        if status == -2 {
            throw QLoraError.invalidConfig(field: "blockSize", reason: "kernel rejected block size \(blockSize)")
        }
        if status != 0 {
            let index = Int(bad)
            let value = w[index]
            throw QLoraError.quantization(tensor: name,
                                          reason: "non-finite value \(value) at flat index \(index) (\(Self.position(index, in: shape)))")
        }
        let statistics: QuantStatistics = doubleQuant ? .double(DoubleQuantState.quantize(absmax: absmax)) : .plain(absmax: absmax)
        return try QuantizedTensor(shape: shape, quantType: quantType, blockSize: blockSize, packed: packed,
                                   statistics: statistics, name: name)
    }

    /// Dequantizes to f32: code[q] · absmax (f32 multiply), the canonical bitsandbytes values.
    public func dequantize(threads: Int = Runtime.defaultThreads) -> Tensor {
        let out = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            dequantize(into: buffer, threads: threads)
            initialized = count
        }
        return Tensor(uncheckedShape: shape, scalars: out)
    }

    /// Dequantizes into a caller-owned buffer of exactly `count` floats (reuse it across calls:
    /// first-touching a fresh 180 MB buffer costs far more than the dequantization itself).
    public func dequantize(into buffer: UnsafeMutableBufferPointer<Float>, threads: Int = Runtime.defaultThreads) {
        precondition(buffer.count == count, "dequantize(into:): buffer has \(buffer.count) floats, need \(count)")
        withKernelView { view in cq_dequantize_4bit(view, buffer.baseAddress, Int32(max(1, threads))) }
    }

    /// Dequantizes rows [row0, row0 + rowCount) of the 2-D weight [rows, cols] into a buffer of
    /// rowCount · cols floats (rows may start mid-block and mid-byte). One thread.
    public func dequantizeRows(_ row0: Int, count rowCount: Int, into buffer: UnsafeMutableBufferPointer<Float>) {
        let cols = shape.last ?? 1
        let rows = cols > 0 ? count / cols : 0
        precondition(row0 >= 0 && rowCount >= 0 && row0 + rowCount <= rows, "rows \(row0)..<\(row0 + rowCount) out of 0..<\(rows)")
        precondition(buffer.count == rowCount * cols, "dequantizeRows: buffer has \(buffer.count) floats, need \(rowCount * cols)")
        withKernelView { view in cq_dequantize_rows(view, Int64(row0), Int64(rowCount), buffer.baseAddress) }
    }

    /// "row r, column c" for a flat index of a 2-D shape; the flat index otherwise.
    static func position(_ index: Int, in shape: [Int]) -> String {
        guard shape.count == 2, shape[1] > 0 else { return "index \(index)" }
        return "row \(index / shape[1]), column \(index % shape[1])"
    }
}

extension DoubleQuantState {
    /// bitsandbytes' 8-bit blockwise quantization of the absmax vector (blocks of 256), with
    /// offset = mean(absmax) (accumulated in double, rounded to f32; bnb's torch f32 mean can
    /// differ from it in the last bit).
    public static func quantize(absmax: [Float], blockSize2: Int = 256) -> DoubleQuantState {
        quantize(absmax: absmax, offset: nil, blockSize2: blockSize2)
    }

    /// The same with a given offset (nil: the mean). With bnb's stored offset the state is
    /// reproduced bit for bit.
    static func quantize(absmax: [Float], offset given: Float?, blockSize2: Int = 256) -> DoubleQuantState {
        precondition(blockSize2 > 0, "blockSize2 must be > 0")
        let blocks = absmax.count
        var code2 = [Float](repeating: 0, count: 256)
        var q = [UInt8](repeating: 0, count: blocks)
        var absmax2 = [Float](repeating: 0, count: (blocks + blockSize2 - 1) / blockSize2)
        var offset: Float = given ?? 0
        absmax.withUnsafeBufferPointer { a in
            code2.withUnsafeMutableBufferPointer { c in
                q.withUnsafeMutableBufferPointer { qp in
                    absmax2.withUnsafeMutableBufferPointer { a2 in
                        if let given {
                            cq_double_quantize_with_offset(a.baseAddress, Int64(blocks), Int32(blockSize2), given,
                                                           c.baseAddress, qp.baseAddress, a2.baseAddress)
                        } else {
                            cq_double_quantize(a.baseAddress, Int64(blocks), Int32(blockSize2), c.baseAddress,
                                               qp.baseAddress, a2.baseAddress, &offset)
                        }
                    }
                }
            }
        }
        return DoubleQuantState(quantizedAbsmax: q, absmax2: absmax2, code2: code2, offset: offset, blockSize2: blockSize2)
    }
}
