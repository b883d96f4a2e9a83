import CQLoRAKernels

/// Decodes `elements` values of ggml type `type` from `src` into `out` with the C kernels
/// (ggml_dequant.c), bit for bit as ggml's dequantize_row_* and gguf-py's numpy reference.
/// `elements` must be whole blocks and `src` exactly their bytes. No arithmetic happens in
/// Swift, so nothing here can be contracted into an FMA.
public func ggmlDequantize(_ type: GGMLType, _ src: UnsafeRawBufferPointer, elements: Int,
                           into out: UnsafeMutableBufferPointer<Float>, threads: Int = 1) throws {
    let (blockSize, typeSize) = type.layout
    guard type.canDequantize else {
        throw QLoraError.unsupported("dequantization of ggml type \(type.name)")
    }
    guard elements >= 0, elements % blockSize == 0 else {
        throw QLoraError.invalidArgument("\(elements) elements of \(type.name) are not whole \(blockSize)-element blocks")
    }
    let blocks = elements / blockSize
    guard src.count == blocks * typeSize, out.count >= elements else {
        throw QLoraError.invalidArgument("\(type.name): \(elements) elements need \(blocks * typeSize) bytes (got \(src.count)) and room for \(elements) floats (got \(out.count))")
    }
    if elements == 0 { return }
    let rc = cq_ggml_dequantize(Int32(type.rawValue), src.baseAddress, Int64(blocks), out.baseAddress, Int32(max(1, threads)))
    precondition(rc == 0, "cq_ggml_dequantize refused a type canDequantize accepted")
}
