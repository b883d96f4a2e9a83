import Foundation
import XCTest
@testable import QLoRA

/// Tests/Fixtures/gguf (written by make_fixtures.py with gguf-py 0.19.0's numpy reference).
enum GGUFFixtures {
    static let root = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/gguf")
    static let types = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"]

    static func url(_ name: String) -> URL { root.appendingPathComponent(name) }

    static func data(_ name: String) throws -> Data {
        guard let d = FileManager.default.contents(atPath: url(name).path) else {
            throw QLoraError.io(file: url(name).path, reason: "fixture missing")
        }
        return d
    }

    static func floats(_ name: String) throws -> [Float] {
        let d = try data(name)
        return d.withUnsafeBytes { raw in
            (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
    }

    static func json(_ name: String) throws -> JSONValue {
        try JSONValue.parse([UInt8](data(name)), file: name, field: "$")
    }
}

final class GGUFFixtureTests: XCTestCase {
    /// Every type decodes bit for bit as gguf-py's numpy dequantization, whole and row by row,
    /// on one thread and on several.
    func testEveryTypeIsBitExact() throws {
        for type in GGUFFixtures.types {
            let file = try GGUFFile(url: GGUFFixtures.url("\(type).gguf"))
            let expected = try GGUFFixtures.floats("\(type).f32")
            XCTAssertEqual(try file.metadata.string("fixture.type"), type)
            XCTAssertEqual(try file.metadata.int("fixture.tensor_count"), file.tensors.count)
            var got = [Float](), byRows = [Float](), threaded = [Float]()
            for t in file.tensors {
                XCTAssertEqual(t.type.name, type)
                XCTAssertTrue(t.type.canDequantize)
                got += try file.dequantize(t.name, threads: 1)
                threaded += try file.dequantize(t.name, threads: 3)
                for r in 0..<t.rows { byRows += try file.dequantizeRows(t.name, r..<(r + 1), threads: 1) }
                XCTAssertEqual(try file.tensor(t.name).shape, t.shape)
            }
            assertBitIdentical(got, expected, "\(type) dequantization")
            assertBitIdentical(threaded, expected, "\(type) dequantization, 3 threads")
            assertBitIdentical(byRows, expected, "\(type) dequantization row by row")
        }
    }

    /// A tensor large enough to be split across threads gives the same bits as one thread.
    func testThreadedDequantizationMatchesSerial() throws {
        var rng = SeededRandom(seed: 7)
        for type in [GGMLType.q4_1, .q4_K, .q6_K, .f16] {
            let blocks = 4096
            var bytes = (0..<(blocks * type.typeSize)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // finite f16 scales: clear the exponent's top bit of every f16 field
            for b in 0..<blocks {
                let fields: [Int]
                switch type {
                case .q4_1, .q4_K: fields = [0, 2]
                case .q6_K: fields = [208]
                default: fields = []
                }
                for f in fields { bytes[b * type.typeSize + f + 1] &= 0xBF }
            }
            let n = blocks * type.blockSize
            var one = [Float](repeating: 0, count: n), many = [Float](repeating: 1, count: n)
            try bytes.withUnsafeBytes { src in
                try one.withUnsafeMutableBufferPointer { try ggmlDequantize(type, src, elements: n, into: $0, threads: 1) }
                try many.withUnsafeMutableBufferPointer { try ggmlDequantize(type, src, elements: n, into: $0, threads: 4) }
            }
            assertBitIdentical(many, one, "\(type) threads")
        }
    }

    /// Tensor infos and the data offset agree with gguf-py's GGUFReader (fixtures.json).
    func testLayoutMatchesGGUFPy() throws {
        let manifest = try GGUFFixtures.json("fixtures.json")
        guard let files = manifest["files"], case .object = files else { return XCTFail("fixtures.json: no files") }
        XCTAssertEqual(files.keys.count, GGUFFixtures.types.count + 1)
        for name in files.keys {
            let entry = files[name]!
            let file = try GGUFFile(url: GGUFFixtures.url(name))
            XCTAssertEqual(file.version, 3)
            XCTAssertEqual(file.dataOffset, entry["data_offset"]?.doubleValue.map { Int($0) }, name)
            XCTAssertEqual(file.alignment, entry["alignment"]?.doubleValue.map { Int($0) }, name)
            XCTAssertEqual(file.fileSize, entry["file_size"]?.doubleValue.map { Int($0) }, name)
            guard case let .array(tensors)? = entry["tensors"] else { return XCTFail(name) }
            XCTAssertEqual(file.tensors.count, tensors.count, name)
            for (t, e) in zip(file.tensors, tensors) {
                XCTAssertEqual(t.name, e["name"].flatMap { if case let .string(s) = $0 { return s } else { return nil } })
                XCTAssertEqual(Double(t.type.rawValue), e["type"]?.doubleValue, t.name)
                guard case let .array(ne)? = e["ne"] else { return XCTFail(t.name) }
                XCTAssertEqual(t.ne.map(Double.init), ne.compactMap(\.doubleValue), t.name)
                XCTAssertEqual(Double(t.offset), e["offset"]?.doubleValue, t.name)
                XCTAssertEqual(Double(t.byteCount), e["nbytes"]?.doubleValue, t.name)
            }
        }
    }

    /// metadata.gguf: every value type (scalars, strings, arrays of each, a nested array) reads
    /// back as gguf-py read it; general.alignment 64 is honoured.
    func testMetadataRoundTrip() throws {
        let file = try GGUFFile(url: GGUFFixtures.url("metadata.gguf"))
        let expected = try GGUFFixtures.json("metadata.json")
        guard case let .array(kvs)? = expected["kv"] else { return XCTFail("metadata.json") }
        XCTAssertEqual(file.metadata.count, kvs.count)
        for (kv, e) in zip(file.metadata.entries, kvs) {
            XCTAssertEqual(.string(kv.key), e["key"])
            XCTAssertEqual(.string(kv.value.typeName), e["type"], kv.key)
            XCTAssertEqual(render(kv.value), e["value"].map(render), kv.key)
        }
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.tensors.map(\.offset), [0, 64])
        XCTAssertEqual(try file.dequantize("a.weight"), [0, 1, 2])
        XCTAssertEqual(try file.tensor("b.weight").shape, [2, 5])
        XCTAssertEqual(try file.dequantize("b.weight"), (0..<10).map { Float($0) * 0.5 })
        // typed look-ups
        let m = file.metadata
        XCTAssertEqual(try m.int("m.i64"), Int.min)
        XCTAssertEqual(try m.int("m.u32"), 4_294_967_295)
        XCTAssertEqual(try m.float("m.f32"), 0.1)
        XCTAssertEqual(try m.bool("m.bool.true"), true)
        XCTAssertEqual(try m.string("m.string"), "héllo, wörld ✓ 🦙")
        XCTAssertEqual(try m.strings("m.array.string"), ["<|endoftext|>", "", "Ġ t", "日本語", "a\nb"])
        XCTAssertEqual(m["m.array.nested"], .array(.array([.int32([1, 2]), .int32([3]), .int32([4, 5, 6])])))
        assertMalformed(try m.int("m.u64"), field: "metadata 'm.u64'", reason: "does not fit")
        assertMalformed(try m.string("m.u8"), field: "metadata 'm.u8'", reason: "expected a STRING, got UINT8")
        assertMalformed(try m.int("no.such.key"), field: "metadata 'no.such.key'", reason: "missing")
    }

    /// GGUF v2 has v3's layout: the same file with version 2 reads the same.
    func testVersion2() throws {
        var bytes = [UInt8](try GGUFFixtures.data("Q4_1.gguf"))
        bytes[4] = 2
        let v2 = try GGUFFile(data: Data(bytes), path: "v2.gguf")
        let v3 = try GGUFFile(url: GGUFFixtures.url("Q4_1.gguf"))
        XCTAssertEqual(v2.version, 2)
        XCTAssertEqual(v2.tensors, v3.tensors)
        XCTAssertEqual(v2.metadata.entries, v3.metadata.entries)
        assertBitIdentical(try v2.dequantize("random.weight"), try v3.dequantize("random.weight"), "v2")
    }

    /// The canonical form metadata.json uses: floats as the hex of their bits.
    private func render(_ v: GGUFValue) -> String {
        switch v {
        case let .float32(f): return "\"f32:\(hex(UInt64(f.bitPattern), 8))\""
        case let .float64(d): return "\"f64:\(hex(d.bitPattern, 16))\""
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[" + (0..<a.count).map { render(a[$0]) }.joined(separator: ",") + "]"
        default: return v.description
        }
    }

    private func render(_ j: JSONValue) -> String {
        switch j {
        case let .int(i): return "\(i)"
        case let .number(_, text): return text
        case let .bool(b): return "\(b)"
        case let .string(s): return "\"\(s)\""
        case let .array(a): return "[" + a.map(render).joined(separator: ",") + "]"
        default: return "?"
        }
    }

    private func hex(_ v: UInt64, _ digits: Int) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: digits - s.count) + s
    }
}
