import Foundation
import XCTest
@testable import QLoRA

/// Damaged and hostile GGUF files: each fails with a `QLoraError` naming what and where, never
/// a crash or an allocation sized by an unchecked count.
final class GGUFHostileTests: XCTestCase {
    typealias B = GGUFBuilder

    func open(_ b: GGUFBuilder) throws -> GGUFFile { try GGUFFile(data: b.build(), path: "bad.gguf") }

    /// A valid small file: two KVs and two F32 tensors.
    func valid() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.kv("general.architecture", type: 8, B.str("llama"))
        b.kv("x.count", type: 4, B.u32(7))
        b.tensor("a", ne: [3], type: 0, bytes: B.f32([1, 2, 3]))
        b.tensor("b", ne: [2, 2], type: 0, bytes: B.f32([4, 5, 6, 7]))
        return b
    }

    func testValidBuilderFile() throws {
        let f = try open(valid())
        XCTAssertEqual(f.names, ["a", "b"])
        XCTAssertEqual(try f.dequantize("b"), [4, 5, 6, 7])
        XCTAssertEqual(f.tensors[1].offset, 32)
    }

    /// Every prefix of the fixtures fails cleanly, until the last tensor's data is complete.
    func testTruncatedAtEveryLength() throws {
        for name in ["metadata.gguf", "Q4_K.gguf", "Q8_0.gguf"] {
            let full = try GGUFFixtures.data(name)
            let whole = try GGUFFile(data: full, path: name)
            let end = whole.tensors.map { whole.dataOffset + $0.offset + $0.byteCount }.max()!
            for n in 0..<full.count {
                let cut = full.prefix(n)
                if n >= end {
                    XCTAssertEqual(try GGUFFile(data: cut, path: name).tensors, whole.tensors)
                    continue
                }
                XCTAssertThrowsError(try GGUFFile(data: cut, path: name), "\(name) cut at \(n)") { error in
                    guard case let QLoraError.malformedFile(_, field, reason) = error else {
                        return XCTFail("\(name) cut at \(n): \(error)")
                    }
                    XCTAssert(reason.contains("truncated") || reason.contains("cannot fit") || reason.contains("past the end"),
                              "\(name) cut at \(n): \(field): \(reason)")
                }
            }
        }
    }

    /// Random byte flips in a fixture: any outcome but a crash; a file that still parses still
    /// dequantizes.
    func testRandomCorruptionNeverCrashes() throws {
        var rng = SeededRandom(seed: 42)
        for name in ["metadata.gguf", "Q6_K.gguf"] {
            let full = [UInt8](try GGUFFixtures.data(name))
            for _ in 0..<400 {
                var bytes = full
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(min(bytes.count, 600)))
                    bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                }
                guard let f = try? GGUFFile(data: Data(bytes), path: name) else { continue }
                for t in f.tensors where t.type.canDequantize { _ = try f.dequantize(t.name, threads: 1) }
            }
        }
    }

    func testHeader() throws {
        XCTAssertThrowsError(try GGUFFile(data: Data([0x47, 0x47]), path: "x")) { e in
            guard case QLoraError.malformedFile(_, "header.magic", _) = e else { return XCTFail("\(e)") }
        }
        var b = valid()
        b.magic = Array("GGML".utf8)
        XCTAssertThrowsError(try open(b)) { e in
            guard case let QLoraError.wrongFileType(_, expected, reason) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(expected, "GGUF")
            XCTAssert(reason.contains("47 47 4d 4c"), reason)
        }
        b = valid(); b.version = 1
        XCTAssertThrowsError(try open(b)) { e in
            guard case let QLoraError.unsupported(what) = e else { return XCTFail("\(e)") }
            XCTAssert(what.contains("version 1"), what)
        }
        b = valid(); b.version = 3 << 24
        XCTAssertThrowsError(try open(b)) { e in
            guard case let QLoraError.unsupported(what) = e else { return XCTFail("\(e)") }
            XCTAssert(what.contains("big-endian"), what)
        }
        b = valid(); b.version = 4
        assertMalformed(try open(b), field: "header.version", reason: "version 4 is not 2 or 3")
        b = valid(); b.kvCount = UInt64.max
        assertMalformed(try open(b), field: "header.kv_count", reason: "18446744073709551615 key-value pairs (at offset 16) cannot fit")
        b = valid(); b.tensorCount = 1 << 60
        assertMalformed(try open(b), field: "header.tensor_count", reason: "cannot fit")
        b = valid(); b.tensorCount = 3 // the data section is read as a third tensor info
        assertMalformed(try open(b), field: "tensor[2] ''", reason: "dimensions")
        b = valid(); b.tensorCount = 6
        assertMalformed(try open(b), field: "header.tensor_count", reason: "6 tensors (at offset 8) cannot fit in the 164 bytes left after the metadata")
        b = valid(); b.kvCount = 3 // the first tensor info is read as a KV
        XCTAssertThrowsError(try open(b))
    }

    func testMetadataValues() throws {
        var b = GGUFBuilder()
        b.kvRaw(B.u64(1 << 40) + Array("k".utf8) + B.u32(0) + [1])
        assertMalformed(try open(b), field: "kv[0] key", reason: "string length 1099511627776 (at offset 24) runs past the end")
        b = GGUFBuilder(); b.kv("k", type: 13, B.u32(0))
        assertMalformed(try open(b), field: "kv[0] 'k' type", reason: "unknown value type 13 at offset 33")
        b = GGUFBuilder(); b.kv("k", type: 7, [2])
        assertMalformed(try open(b), field: "kv[0] 'k'", reason: "BOOL byte 2")
        b = GGUFBuilder(); b.kv("k", type: 8, B.u64(100) + Array("short".utf8))
        assertMalformed(try open(b), field: "kv[0] 'k'", reason: "string length 100 (at offset 37) runs past the end")
        b = GGUFBuilder(); b.kvRaw(B.u64(2) + [0xC3, 0x28] + B.u32(0) + [1])
        assertMalformed(try open(b), field: "kv[0] key", reason: "not valid UTF-8")
        b = GGUFBuilder(); b.kv("", type: 0, [1])
        assertMalformed(try open(b), field: "kv[0] ''", reason: "empty key")
        b = GGUFBuilder(); b.kv("k", type: 0, [1]); b.kv("k", type: 0, [2])
        assertMalformed(try open(b), field: "kv[1] 'k'", reason: "duplicate key (also kv[0])")
        // arrays: absurd count, unknown element type, truncated elements, bad string inside
        b = GGUFBuilder(); b.kv("a", type: 9, B.u32(4) + B.u64(1 << 61) + B.u32(1))
        assertMalformed(try open(b), field: "kv[0] 'a' count", reason: "2305843009213693952 UINT32 elements")
        b = GGUFBuilder(); b.kv("a", type: 9, B.u32(8) + B.u64(1 << 40) + B.str("x"))
        assertMalformed(try open(b), field: "kv[0] 'a' count", reason: "STRING elements")
        b = GGUFBuilder(); b.kv("a", type: 9, B.u32(77) + B.u64(1))
        assertMalformed(try open(b), field: "kv[0] 'a' element type", reason: "unknown value type 77")
        b = GGUFBuilder(); b.kv("a", type: 9, B.u32(8) + B.u64(2) + B.str("ok") + B.u64(9) + Array("abc".utf8))
        assertMalformed(try open(b), field: "kv[0] 'a'[1]", reason: "string length 9")
        b = GGUFBuilder(); b.kv("a", type: 9, B.u32(10) + B.u64(3) + B.u64(1) + B.u64(2))
        assertMalformed(try open(b), field: "kv[0] 'a' count", reason: "3 UINT64 elements (at offset 41) cannot fit in the 16 bytes left")
        // nesting deeper than the limit
        var nested = B.u32(0) + B.u64(0)
        for _ in 0..<9 { nested = B.u32(9) + B.u64(1) + nested }
        b = GGUFBuilder(); b.kv("deep", type: 9, nested)
        assertMalformed(try open(b), field: "kv[0] 'deep'", reason: "nested more than 8 deep")
        // empty arrays and strings are fine
        b = GGUFBuilder(); b.kv("e", type: 9, B.u32(8) + B.u64(0)); b.kv("s", type: 8, B.str(""))
        let f = try open(b)
        XCTAssertEqual(f.metadata["e"], .array(.string([])))
        XCTAssertEqual(f.metadata["s"], .string(""))
    }

    func testAlignment() throws {
        for (payload, type, reason) in [(B.u64(64), UInt32(10), "must be a UINT32, got UINT64"),
                                         (B.u32(48), 4, "48 is not a power of two"),
                                         (B.u32(0), 4, "0 is not a power of two")] {
            var b = valid()
            b.kv("general.alignment", type: type, payload)
            assertMalformed(try open(b), field: "kv[2] 'general.alignment'", reason: reason)
        }
        var b = GGUFBuilder()
        b.alignment = 128
        b.kv("general.alignment", type: 4, B.u32(128))
        b.tensor("a", ne: [3], type: 0, bytes: B.f32([1, 2, 3]))
        b.tensor("b", ne: [1], type: 0, bytes: B.f32([4]))
        let f = try open(b)
        XCTAssertEqual(f.dataOffset % 128, 0)
        XCTAssertEqual(f.tensors.map(\.offset), [0, 128])
        XCTAssertEqual(try f.dequantize("b"), [4])
    }

    func testTensorInfos() throws {
        func one(ne: [UInt64] = [32], type: UInt32 = 0, bytes: [UInt8] = B.f32(.init(repeating: 1, count: 32)),
                 offset: UInt64? = nil, nDims: UInt32? = nil, name: String = "t") -> GGUFBuilder {
            var b = GGUFBuilder()
            b.tensor(name, ne: ne, type: type, bytes: bytes, offset: offset, nDims: nDims)
            return b
        }
        assertMalformed(try open(one(nDims: 0)), field: "tensor[0] 't' n_dims", reason: "0 dimensions")
        assertMalformed(try open(one(ne: [1, 1, 1, 1, 32], nDims: 5)), field: "tensor[0] 't' n_dims", reason: "5 dimensions")
        assertMalformed(try open(one(nDims: 1 << 30)), field: "tensor[0] 't' n_dims", reason: "1073741824 dimensions")
        assertMalformed(try open(one(type: 99)), field: "tensor[0] 't' type", reason: "unknown ggml type 99")
        assertMalformed(try open(one(type: 4)), field: "tensor[0] 't' type", reason: "Q4_2, removed from ggml")
        assertMalformed(try open(one(ne: [48], type: 2, bytes: [UInt8](repeating: 0, count: 27))),
                        field: "tensor[0] 't' ne", reason: "ne[0] = 48 columns is not a multiple of the Q4_0 block size 32")
        assertMalformed(try open(one(ne: [1 << 62, 1 << 62])), field: "tensor[0] 't' ne", reason: "more elements than fit in 64 bits")
        assertMalformed(try open(one(ne: [UInt64.max])), field: "tensor[0] 't' ne", reason: "too large")
        assertMalformed(try open(one(ne: [1 << 61])), field: "tensor[0] 't' ne", reason: "more bytes than fit in 64 bits")
        assertMalformed(try open(one(offset: 4)), field: "tensor[0] 't' offset", reason: "4 (at offset")
        assertMalformed(try open(one(offset: 4)), field: "tensor[0] 't' offset", reason: "not a multiple of the alignment 32")
        assertMalformed(try open(one(offset: 1 << 62)), field: "tensor[0] 't' offset", reason: "run past its end")
        assertMalformed(try open(one(ne: [64])), field: "tensor[0] 't' offset", reason: "bytes 0..<256 of the data section (256 bytes of F32 [64]) run past its end at 128")
        assertMalformed(try open(one(offset: UInt64.max)), field: "tensor[0] 't' offset", reason: "too large")
        assertMalformed(try open(one(offset: 32)), field: "tensor[0] 't' offset", reason: "run past its end")
        // truncated inside the data section
        let cut = valid().build().dropLast(20)
        assertMalformed(try GGUFFile(data: cut, path: "cut.gguf"), field: "tensor[1] 'b' offset", reason: "truncated")

        var b = GGUFBuilder()
        b.tensor("t", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 8)))
        b.tensor("t", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 8)))
        assertMalformed(try open(b), field: "tensor[1] 't'", reason: "duplicate tensor name (also tensor[0])")

        b = GGUFBuilder() // overlapping: b claims a's bytes
        b.tensor("a", ne: [16], type: 0, bytes: B.f32(.init(repeating: 0, count: 16)))
        b.tensor("b", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 8)), offset: 32)
        assertMalformed(try open(b), field: "tensor[1] 'b' offset", reason: "32 overlaps tensor[0] 'a' (bytes 0..<64")

        b = GGUFBuilder() // a gap: a's size disagrees with where b starts
        b.tensor("a", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 16)))
        b.tensor("b", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 8)))
        assertMalformed(try open(b), field: "tensor[0] 'a' size", reason: "32 bytes (F32 [8]) disagree with the next tensor's offset 64: expected 32")

        b = GGUFBuilder() // data section not starting with a tensor
        b.tensor("a", ne: [8], type: 0, bytes: B.f32(.init(repeating: 0, count: 8)), offset: 32)
        b.tensor("pad", ne: [8], type: 0, bytes: [])
        XCTAssertThrowsError(try open(b))
    }

    func testUnsupportedTypeAndBadRows() throws {
        var b = GGUFBuilder()
        b.tensor("k", ne: [256], type: 10, bytes: [UInt8](repeating: 0, count: 84)) // Q2_K
        let f = try open(b)
        XCTAssertEqual(f.tensors[0].type, .q2_K)
        XCTAssertEqual(try f.rawData("k").count, 84)
        XCTAssertThrowsError(try f.dequantize("k")) { e in
            guard case let QLoraError.unsupported(what) = e else { return XCTFail("\(e)") }
            XCTAssert(what.contains("'k' is Q2_K"), what)
        }
        XCTAssertThrowsError(try f.dequantizeRows("k", 0..<2)) { e in
            guard case QLoraError.invalidArgument = e else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try f.info("kk")) { e in
            guard case let QLoraError.missingTensor(_, name, _, suggestions) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(name, "kk")
            XCTAssertEqual(suggestions, ["k"])
        }
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 10).withUnsafeBytes { src in
            var out = [Float](repeating: 0, count: 32)
            try out.withUnsafeMutableBufferPointer { try ggmlDequantize(.q4_0, src, elements: 32, into: $0) }
        })
    }
}
