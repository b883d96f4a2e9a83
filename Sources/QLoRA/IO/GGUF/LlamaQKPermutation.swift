/// llama.cpp's convert_hf_to_gguf.py permutes the rows of Llama's q_proj and k_proj so that
/// RoPE rotates adjacent pairs (x[2j], x[2j+1]); Hugging Face rotates halves (x[j], x[j+hd/2]).
/// Transformers undoes it when loading (`_reverse_permute_weights`); this is the same map:
///
///     HF_row[h*hd + i*hd/2 + j] = GGUF_row[h*hd + 2*j + i]    (h < heads, i ∈ {0,1}, j < hd/2)
///
/// with hd = rows / heads. Rows are whole blocks in every ggml type, so the map applies to raw
/// quantized rows as well as to dequantized ones.
public enum LlamaQKPermutation {
    /// The GGUF row that HF row `row` comes from.
    public static func ggufRow(forHFRow row: Int, rows: Int, heads: Int) -> Int {
        let hd = rows / heads, half = hd / 2
        let h = row / hd, w = row % hd
        return h * hd + 2 * (w % half) + w / half
    }

    static func check(rows: Int, heads: Int, what: String) throws {
        guard heads > 0, rows > 0, rows % (2 * heads) == 0 else {
            throw QLoraError.shapeMismatch(context: "Q/K un-permutation of \(what): \(rows) rows are not \(heads) heads of an even head size",
                                           expected: [2 * max(heads, 1)], actual: [rows])
        }
    }

    /// Reorders rows of `rowSize` elements from GGUF to HF order (`values` holds rows × rowSize).
    public static func unpermute<T>(_ values: [T], rows: Int, heads: Int, what: String = "tensor") throws -> [T] {
        try check(rows: rows, heads: heads, what: what)
        guard values.count % rows == 0 else {
            throw QLoraError.shapeMismatch(context: "Q/K un-permutation of \(what)", expected: [rows, values.count / rows], actual: [values.count])
        }
        let rowSize = values.count / rows
        var out = [T]()
        out.reserveCapacity(values.count)
        for r in 0..<rows {
            let src = ggufRow(forHFRow: r, rows: rows, heads: heads) * rowSize
            out.append(contentsOf: values[src..<(src + rowSize)])
        }
        return out
    }

    /// The inverse: HF order to GGUF order (what llama.cpp's converter does).
    public static func permute<T>(_ values: [T], rows: Int, heads: Int, what: String = "tensor") throws -> [T] {
        try check(rows: rows, heads: heads, what: what)
        guard values.count % rows == 0 else {
            throw QLoraError.shapeMismatch(context: "Q/K permutation of \(what)", expected: [rows, values.count / rows], actual: [values.count])
        }
        let rowSize = values.count / rows
        var out = values
        for r in 0..<rows {
            let dst = ggufRow(forHFRow: r, rows: rows, heads: heads) * rowSize
            out.replaceSubrange(dst..<(dst + rowSize), with: values[(r * rowSize)..<((r + 1) * rowSize)])
        }
        return out
    }
}
