import CQLoRAKernels

extension QuantizedTensor {
    /// Quantizes an f32 tensor exactly as bitsandbytes 0.50.2 does (see the reference manifest).
    /// Throws `quantization` naming `name` and the first bad index for NaN/Inf, `invalidConfig`
    /// for an unsupported block size.
    public static func quantize(_ tensor: Tensor, quantType: QuantType = .nf4, blockSize: Int = 64,
                                doubleQuant: Bool = true, name: String = "weight",
                                threads: Int = Runtime.defaultThreads) throws -> QuantizedTensor {
        try QLoraConfig.validateBlockSize(blockSize)
        let n = tensor.count
        guard n > 0 else { throw QLoraError.quantization(tensor: name, reason: "tensor is empty (shape \(tensor.shape))") }
        let blocks = (n + blockSize - 1) / blockSize
        var packed = [UInt8](repeating: 0, count: (n + 1) / 2)
        var absmax = [Float](repeating: 0, count: blocks)
        var bad: Int64 = -1
        let status = tensor.scalars.withUnsafeBufferPointer { w in
            packed.withUnsafeMutableBufferPointer { p in
                absmax.withUnsafeMutableBufferPointer { a in
                    cq_quantize_4bit(w.baseAddress, Int64(n), Int32(blockSize), quantType == .nf4 ? CQ_NF4 : CQ_FP4,
                                     p.baseAddress, a.baseAddress, &bad, Int32(threads))
                }
            }
        }
        if status != 0 {
            let index = Int(bad)
            let value = tensor.scalars[index]
            throw QLoraError.quantization(tensor: name,
                                          reason: "non-finite value \(value) at flat index \(index) (\(Self.position(index, in: tensor.shape)))")
        }
        let statistics: QuantStatistics = doubleQuant ? .double(DoubleQuantState.quantize(absmax: absmax)) : .plain(absmax: absmax)
        return try QuantizedTensor(shape: tensor.shape, quantType: quantType, blockSize: blockSize, packed: packed,
                                   statistics: statistics, name: name)
    }

    /// Dequantizes to f32: code[q] · absmax (f32 multiply), the canonical bitsandbytes values.
    public func dequantize(threads: Int = Runtime.defaultThreads) -> Tensor {
        var out = [Float](repeating: 0, count: count)
        withKernelView { view in
            out.withUnsafeMutableBufferPointer { o in cq_dequantize_4bit(view, o.baseAddress, Int32(threads)) }
        }
        return Tensor(uncheckedShape: shape, scalars: out)
    }

    /// "row r, column c" for a flat index of a 2-D shape; the flat index otherwise.
    static func position(_ index: Int, in shape: [Int]) -> String {
        guard shape.count == 2, shape[1] > 0 else { return "index \(index)" }
        return "row \(index / shape[1]), column \(index % shape[1])"
    }
}

extension DoubleQuantState {
    /// bitsandbytes' 8-bit blockwise quantization of the absmax vector (blocks of 256).
    public static func quantize(absmax: [Float], blockSize2: Int = 256) -> DoubleQuantState {
        let blocks = absmax.count
        var code2 = [Float](repeating: 0, count: 256)
        var q = [UInt8](repeating: 0, count: blocks)
        var absmax2 = [Float](repeating: 0, count: (blocks + blockSize2 - 1) / blockSize2)
        var offset: Float = 0
        absmax.withUnsafeBufferPointer { a in
            code2.withUnsafeMutableBufferPointer { c in
                q.withUnsafeMutableBufferPointer { qp in
                    absmax2.withUnsafeMutableBufferPointer { a2 in
                        cq_double_quantize(a.baseAddress, Int64(blocks), Int32(blockSize2), c.baseAddress,
                                           qp.baseAddress, a2.baseAddress, &offset)
                    }
                }
            }
        }
        return DoubleQuantState(quantizedAbsmax: q, absmax2: absmax2, code2: code2, offset: offset, blockSize2: blockSize2)
    }
}
