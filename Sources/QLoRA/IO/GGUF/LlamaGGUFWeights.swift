/// A GGUF Llama checkpoint seen with Hugging Face names and layouts: each tensor dequantized
/// (exactly as ggml), q_proj / k_proj rows un-permuted, shape [ne1, ne0].
public struct LlamaGGUFWeights: Sendable {
    public let file: GGUFFile

    public init(file: GGUFFile) throws {
        let arch = try file.metadata.string("general.architecture")
        guard arch == "llama" else {
            throw QLoraError.unsupported("\(file.path): general.architecture is '\(arch)', not 'llama'")
        }
        self.file = file
    }

    /// HF names of the file's tensors, in file order (names that are not Llama weights are left out).
    public var hfNames: [String] { file.names.compactMap(LlamaGGUFNames.hfName(forGGUF:)) }

    /// The HF tensor `hfName`, dequantized and in HF row order.
    public func tensor(_ hfName: String, threads: Int = Runtime.defaultThreads) throws -> Tensor {
        guard let g = LlamaGGUFNames.ggufName(forHF: hfName), file.contains(g) else {
            throw QLoraError.missingTensor(file: file.path, name: hfName, neededBy: "the Llama GGUF name map",
                                           suggestions: NameSuggestions.near(hfName, in: hfNames))
        }
        let info = try file.info(g)
        var values = try file.dequantize(g, threads: threads)
        if let heads = try LlamaGGUFNames.unpermuteHeads(ofGGUF: g, metadata: file.metadata) {
            values = try LlamaQKPermutation.unpermute(values, rows: info.rows, heads: heads, what: g)
        }
        return try Tensor(shape: info.shape, scalars: values)
    }
}
