/// One tensor of a GGUF file as its tensor info describes it, checked against the file.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    public let type: GGMLType
    /// ggml dimensions, ne[0] first: ne[0] is the contiguous dimension (columns), ne[1] rows.
    public let ne: [Int]
    /// Offset of the first byte, relative to the data section (a multiple of the alignment).
    public let offset: Int
    /// Bytes of data: elementCount / blockSize * typeSize.
    public let byteCount: Int
    public let elementCount: Int

    /// Row-major shape as numpy / PyTorch / Hugging Face see it: ne reversed ([rows, cols]).
    public var shape: [Int] { ne.reversed() }
    /// Elements per row (ne[0]); rows never share a block.
    public var columns: Int { ne[0] }
    /// Rows of `columns` elements (the product of ne[1...]).
    public var rows: Int { ne[0] == 0 ? 0 : elementCount / ne[0] }
    /// Bytes per row.
    public var rowBytes: Int { ne[0] / type.blockSize * type.typeSize }
}
