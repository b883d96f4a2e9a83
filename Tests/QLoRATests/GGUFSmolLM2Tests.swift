import Foundation
import XCTest
@testable import QLoRA

/// The SmolLM2-135M-Instruct Q4_1 GGUF against the reference pieces in
/// ../shared/reference/smollm2 (dequantized and un-permuted by an independent numpy code checked
/// against transformers), and, when `make model` has fetched it, the whole file.
final class GGUFSmolLM2Tests: XCTestCase {
    static let modelFile = Reference.projectRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")

    func dequantize(_ type: GGMLType, _ bytes: [UInt8]) throws -> [Float] {
        let n = bytes.count / type.typeSize * type.blockSize
        var out = [Float](repeating: .nan, count: n)
        try bytes.withUnsafeBytes { src in
            try out.withUnsafeMutableBufferPointer { try ggmlDequantize(type, src, elements: n, into: $0, threads: 2) }
        }
        return out
    }

    /// attn_q (9 heads) and attn_k (3 heads) of block 0: raw Q4_1 rows → GGUF-order floats, then
    /// un-permuted → HF order; un-permuting the raw rows first gives the same.
    func testQKDequantizationAndUnpermutation() throws {
        for (name, rows, heads) in [("attn_q", 576, 9), ("attn_k", 192, 3)] {
            let raw = try Reference.bytes("smollm2/dequant/blk.0.\(name).weight.q4_1.u8")
            XCTAssertEqual(raw.count, rows * 360)
            let gguf = try dequantize(.q4_1, raw)
            assertBitIdentical(gguf, try Reference.floats("smollm2/dequant/blk.0.\(name).weight.gguf_order.f32"), "\(name) gguf order")
            let hf = try Reference.floats("smollm2/dequant/blk.0.\(name).weight.hf_order.f32")
            assertBitIdentical(try LlamaQKPermutation.unpermute(gguf, rows: rows, heads: heads), hf, "\(name) hf order")
            let rawHF = try LlamaQKPermutation.unpermute(raw, rows: rows, heads: heads)
            assertBitIdentical(try dequantize(.q4_1, rawHF), hf, "\(name) un-permuted raw rows")
            XCTAssertEqual(try LlamaQKPermutation.permute(rawHF, rows: rows, heads: heads), raw)
        }
    }

    func testFFNDownAndTokenEmbeddingRows() throws {
        assertBitIdentical(try dequantize(.q4_1, Reference.bytes("smollm2/dequant/blk.0.ffn_down.weight.q4_1.u8")),
                           try Reference.floats("smollm2/dequant/blk.0.ffn_down.weight.f32"), "ffn_down")
        let embd = try Reference.bytes("smollm2/dequant/token_embd.weight.rows_0_64.q8_0.u8")
        XCTAssertEqual(embd.count, 64 * 576 / 32 * 34)
        assertBitIdentical(try dequantize(.q8_0, embd), try Reference.floats("smollm2/dequant/token_embd.weight.rows_0_64.f32"), "token_embd rows 0..<64")
    }

    /// The name map, permutation flags and HF shapes of all 272 tensors agree with the reference
    /// (tensor_sha256.json is keyed by transformers' names; gguf_facts lists the file's tensors).
    func testNameMapCoversTheModel() throws {
        let sums = try JSONValue.parse(Reference.bytes("smollm2/dequant/tensor_sha256.json"), file: "tensor_sha256.json", field: "$")
        let facts = try JSONValue.parse(Reference.bytes("smollm2/manifest.json"), file: "manifest.json", field: "$")["gguf_facts"]
        guard let tensors = sums["tensors"], case let .array(infos)? = facts?["tensors"] else { return XCTFail("reference JSON") }
        var ne = [String: [Int]]()
        for t in infos {
            guard case let .string(name)? = t["name"], case let .array(dims)? = t["dims_ne"] else { return XCTFail("gguf_facts") }
            ne[name] = dims.compactMap(\.doubleValue).map { Int($0) }
        }
        XCTAssertEqual(tensors.keys.count, 272)
        XCTAssertEqual(ne.count, 272)
        for hf in tensors.keys {
            let e = tensors[hf]!
            guard case let .string(g)? = e["gguf_name"], case let .bool(unpermuted)? = e["unpermuted"],
                  case let .array(shape)? = e["shape"] else { return XCTFail(hf) }
            XCTAssertEqual(LlamaGGUFNames.hfName(forGGUF: g), hf)
            XCTAssertEqual(LlamaGGUFNames.ggufName(forHF: hf), g)
            XCTAssertEqual(LlamaGGUFNames.permutation(ofGGUF: g) != .none, unpermuted, g)
            XCTAssertEqual(ne[g].map { Array($0.reversed()) }, shape.compactMap(\.doubleValue).map { Int($0) }, g)
        }
        XCTAssertEqual(LlamaGGUFNames.hfName(forGGUF: "output.weight"), "lm_head.weight")
        XCTAssertNil(LlamaGGUFNames.hfName(forGGUF: "blk.x.attn_q.weight"))
        XCTAssertNil(LlamaGGUFNames.hfName(forGGUF: "blk.01.attn_q.weight"))
        XCTAssertNil(LlamaGGUFNames.ggufName(forHF: "model.layers.0.self_attn.rotary_emb.inv_freq"))
    }

    /// The whole file (after `make model`): layout and metadata as gguf_facts lists them, and
    /// every tensor, dequantized and un-permuted, hashes to tensor_sha256.json.
    func testWholeModelFile() throws {
        guard FileManager.default.fileExists(atPath: GGUFSmolLM2Tests.modelFile.path) else {
            throw XCTSkip("models/ absent (run `make model`)")
        }
        let file = try GGUFFile(url: GGUFSmolLM2Tests.modelFile)
        let facts = try JSONValue.parse(Reference.bytes("smollm2/manifest.json"), file: "manifest.json", field: "$")["gguf_facts"]!
        XCTAssertEqual(Double(file.version), facts["version"]?.doubleValue)
        XCTAssertEqual(Double(file.tensors.count), facts["tensor_count"]?.doubleValue)
        XCTAssertEqual(Double(file.metadata.count), facts["kv_count"]?.doubleValue)
        XCTAssertEqual(Double(file.dataOffset), facts["data_section_start"]?.doubleValue)
        XCTAssertEqual(Double(file.fileSize), facts["file_size"]?.doubleValue)
        XCTAssertEqual(file.alignment, 32)
        let meta = facts["metadata"]!
        XCTAssertEqual(file.metadata.keys, meta.keys)
        for kv in file.metadata.entries {
            let e = meta[kv.key]!
            XCTAssertEqual(.string(kv.value.typeName), e["type"], kv.key)
            if let count = e["count"]?.doubleValue { XCTAssertEqual(Double(kv.value.arrayValue?.count ?? -1), count, kv.key) }
            switch kv.value {
            case let .float32(f): XCTAssertEqual(e["hex"], .string(String(f.bitPattern, radix: 16)), kv.key)
            case let .string(s): XCTAssertEqual(e["value"], .string(s), kv.key)
            case let .bool(b): XCTAssertEqual(e["value"], .bool(b), kv.key)
            case .array: break
            default: XCTAssertEqual(Double(kv.value.intValue ?? -1), e["value"]?.doubleValue, kv.key)
            }
        }
        XCTAssertEqual(try file.metadata.strings("tokenizer.ggml.tokens").prefix(3), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        guard case let .array(infos)? = facts["tensors"] else { return XCTFail("gguf_facts.tensors") }
        for (t, e) in zip(file.tensors, infos) {
            XCTAssertEqual(.string(t.name), e["name"])
            XCTAssertEqual(.string(t.type.name), e["type"], t.name)
            XCTAssertEqual(Double(t.offset), e["offset"]?.doubleValue, t.name)
            XCTAssertEqual(Double(t.byteCount), e["nbytes"]?.doubleValue, t.name)
        }
        let weights = try LlamaGGUFWeights(file: file)
        let sums = try JSONValue.parse(Reference.bytes("smollm2/dequant/tensor_sha256.json"), file: "tensor_sha256.json", field: "$")["tensors"]!
        XCTAssertEqual(weights.hfNames.sorted(), sums.keys.sorted())
        for hf in sums.keys {
            let t = try weights.tensor(hf)
            let digest = t.scalars.withUnsafeBytes { SHA256.hex($0) }
            XCTAssertEqual(.string(digest), sums[hf]?["sha256_f32"], hf)
        }
    }

    func testSHA256() {
        XCTAssertEqual([UInt8]().withUnsafeBytes { SHA256.hex($0) }, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(Array("abc".utf8).withUnsafeBytes { SHA256.hex($0) }, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = [UInt8](repeating: 0x61, count: 1000)
        var s = SHA256()
        s.update(Array(long[0..<7])); s.update(Array(long[7..<130])); s.update(Array(long[130...]))
        XCTAssertEqual(s.finalize(), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }
}
