import XCTest
@testable import QLoRA

final class GGUFPermutationTests: XCTestCase {
    /// HF_row[h*hd + i*hd/2 + j] = GGUF_row[h*hd + 2*j + i], and numpy's
    /// reshape(n_head, 2, hd/2, cols).swapaxes(1, 2) forward permutation is its inverse.
    func testIndexFormula() throws {
        for (rows, heads) in [(576, 9), (192, 3), (8, 2), (2, 1)] {
            let hd = rows / heads
            for h in 0..<heads { for i in 0..<2 { for j in 0..<(hd / 2) {
                XCTAssertEqual(LlamaQKPermutation.ggufRow(forHFRow: h * hd + i * hd / 2 + j, rows: rows, heads: heads), h * hd + 2 * j + i)
            } } }
            // llama.cpp's permute: GGUF row (h, j, i) <- HF row (h, i, j)
            let hfRows = Array(0..<rows)
            let gguf = try LlamaQKPermutation.permute(hfRows, rows: rows, heads: heads)
            for h in 0..<heads { for j in 0..<(hd / 2) { for i in 0..<2 {
                XCTAssertEqual(gguf[h * hd + 2 * j + i], h * hd + i * hd / 2 + j)
            } } }
            XCTAssertEqual(try LlamaQKPermutation.unpermute(gguf, rows: rows, heads: heads), hfRows)
        }
        // rows of several elements move whole
        let values = (0..<24).map { Float($0) }
        let un = try LlamaQKPermutation.unpermute(values, rows: 4, heads: 1)
        XCTAssertEqual(un, [0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17, 6, 7, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23])
        XCTAssertThrowsError(try LlamaQKPermutation.unpermute(values, rows: 6, heads: 2)) { e in
            guard case QLoraError.shapeMismatch = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try LlamaQKPermutation.unpermute(values, rows: 5, heads: 1))
        XCTAssertThrowsError(try LlamaQKPermutation.unpermute(values, rows: 4, heads: 0))
    }

    /// LlamaGGUFWeights on a small Llama-shaped file: HF names, un-permuted q/k with
    /// head_count / head_count_kv, the rest as is, shape [ne1, ne0].
    func testLlamaWeights() throws {
        typealias B = GGUFBuilder
        var b = GGUFBuilder()
        b.kv("general.architecture", type: 8, B.str("llama"))
        b.kv("llama.attention.head_count", type: 4, B.u32(2))
        b.kv("llama.attention.head_count_kv", type: 4, B.u32(1))
        let q = (0..<(8 * 32)).map { Float($0) }, k = (0..<(4 * 32)).map { Float(-$0) }
        b.tensor("blk.0.attn_q.weight", ne: [32, 8], type: 0, bytes: B.f32(q))
        b.tensor("blk.0.attn_k.weight", ne: [32, 4], type: 0, bytes: B.f32(k))
        b.tensor("blk.0.attn_v.weight", ne: [32, 4], type: 0, bytes: B.f32(k))
        b.tensor("token_embd.weight", ne: [32, 3], type: 0, bytes: B.f32(Array(q.prefix(96))))
        let w = try LlamaGGUFWeights(file: GGUFFile(data: b.build(), path: "tiny.gguf"))
        XCTAssertEqual(w.hfNames, ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                                   "model.layers.0.self_attn.v_proj.weight", "model.embed_tokens.weight"])
        let tq = try w.tensor("model.layers.0.self_attn.q_proj.weight")
        XCTAssertEqual(tq.shape, [8, 32])
        XCTAssertEqual(tq.scalars, try LlamaQKPermutation.unpermute(q, rows: 8, heads: 2))
        XCTAssertNotEqual(tq.scalars, q)
        XCTAssertEqual(try w.tensor("model.layers.0.self_attn.k_proj.weight").scalars, try LlamaQKPermutation.unpermute(k, rows: 4, heads: 1))
        XCTAssertEqual(try w.tensor("model.layers.0.self_attn.v_proj.weight").scalars, k)
        XCTAssertEqual(try w.tensor("model.embed_tokens.weight").shape, [3, 32])
        XCTAssertThrowsError(try w.tensor("lm_head.weight")) { e in
            guard case QLoraError.missingTensor = e else { return XCTFail("\(e)") }
        }
    }
}
