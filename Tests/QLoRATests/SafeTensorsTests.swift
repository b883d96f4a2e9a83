import Foundation
import XCTest
@testable import QLoRA

/// A fresh temporary directory, removed when the test ends.
func makeTempDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-io-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// Asserts `body` throws a `QLoraError.malformedFile` whose field and reason contain the given text.
func assertMalformed<T>(_ body: @autoclosure () throws -> T, field: String, reason: String,
                        file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        guard case let QLoraError.malformedFile(_, f, r) = error else {
            return XCTFail("expected malformedFile, got \(error)", file: file, line: line)
        }
        XCTAssert(f.contains(field), "field \"\(f)\" does not contain \"\(field)\"", file: file, line: line)
        XCTAssert(r.contains(reason), "reason \"\(r)\" does not contain \"\(reason)\"", file: file, line: line)
    }
}

final class SafeTensorsTests: XCTestCase {
    /// A safetensors image from a header text and a data region.
    func image(_ header: String, data: [UInt8]) -> Data {
        var out = Data()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        out.append(contentsOf: data)
        return out
    }

    func open(_ header: String, data: [UInt8]) throws -> SafeTensorsFile {
        try SafeTensorsFile(data: image(header, data: data), path: "test.safetensors")
    }

    func testReadsReferenceModel() throws {
        let file = try SafeTensorsFile(url: Reference.url("interop/model_bnb4bit/model.safetensors"))
        let manifest = try Reference.manifest("interop/manifest.json")
        let keys = (manifest["safetensors_keys"] as! [String: Any])["model_bnb4bit/model.safetensors"] as! [String: [String: Any]]
        XCTAssertEqual(file.names, keys.keys.sorted())
        XCTAssertEqual(file.metadata, ["format": "pt"])
        for (name, entry) in keys {
            let info = try file.info(name)
            XCTAssertEqual(info.dtype.rawValue, entry["dtype"] as? String, name)
            XCTAssertEqual(info.shape, entry["shape"] as? [Int], name)
        }
        let map = try file.tensor("model.layers.0.mlp.up_proj.weight.quant_map")
        XCTAssertEqual(map.shape, [16])
        assertBitIdentical(map.scalars, try Reference.floats("nf4_code.f32"), "quant_map")
        XCTAssertThrowsError(try file.tensor("model.layers.0.mlp.up_proj.weight")) // U8 is not floating point
        XCTAssertEqual(try file.bytes("model.layers.0.mlp.up_proj.weight").count, 4096)
    }

    /// Writing every tensor of a file produced by the Python library reproduces it byte for byte:
    /// same data order (element size, then name), same compact header, same space padding.
    func testWriterReproducesPythonFilesByteForByte() throws {
        let dir = try makeTempDirectory(self)
        for name in ["interop/model_bnb4bit/model.safetensors", "interop/adapter/adapter_model.safetensors",
                     "interop/model_fp32/model.safetensors"] {
            let original = try SafeTensorsFile(url: Reference.url(name))
            let out = dir.appendingPathComponent("copy.safetensors")
            let writer = try SafeTensorsWriter(url: out, metadata: original.metadata)
            for n in original.names.reversed() {
                let info = try original.info(n)
                try writer.add(n, dtype: info.dtype, shape: info.shape, data: original.rawData(n))
            }
            let written = try writer.commit()
            let copy = try Data(contentsOf: out)
            XCTAssertEqual(written, copy.count)
            XCTAssert(copy == (try Reference.data(name)), "\(name) not reproduced")
        }
    }

    func testWriterRoundTripAllDTypes() throws {
        let dir = try makeTempDirectory(self)
        let url = dir.appendingPathComponent("t.safetensors")
        let writer = try SafeTensorsWriter(url: url, metadata: ["format": "pt", "note": "a \"quoted\"\nline"])
        try writer.add("w", floats: [1, -2.5, .infinity, 0x1p-140], shape: [2, 2])
        try writer.add("codes", u8: [0, 255, 7], shape: [3])
        let half: [UInt16] = [0x3C00, 0xC000, 0x0001, 0x7C00, 0xFBFF, 0x8000]
        try half.withUnsafeBytes { try writer.add("h", dtype: .f16, shape: [3, 2], bytes: $0) }
        let bf: [UInt16] = [0x3F80, 0x0001, 0xFF80]
        try bf.withUnsafeBytes { try writer.add("b", dtype: .bf16, shape: [3], bytes: $0) }
        let d: [Double] = [0.1, -1e300, 3]
        try d.withUnsafeBytes { try writer.add("d", dtype: .f64, shape: [3, 1], bytes: $0) }
        let ints: [Int32] = [-1, 5]
        try ints.withUnsafeBytes { try writer.add("i", dtype: .i32, shape: [2], bytes: $0) }
        try writer.add("empty", floats: [], shape: [0, 4])
        XCTAssertThrowsError(try writer.add("w", floats: [1], shape: [1]))        // duplicate name
        XCTAssertThrowsError(try writer.add("x", floats: [1, 2], shape: [3]))     // size mismatch
        try writer.commit()

        let file = try SafeTensorsFile(url: url)
        XCTAssertEqual(file.names, ["b", "codes", "d", "empty", "h", "i", "w"])
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "a \"quoted\"\nline"])
        assertBitIdentical(try file.floats("w"), [1, -2.5, .infinity, 0x1p-140], "f32")
        XCTAssertEqual(try file.bytes("codes"), [0, 255, 7])
        XCTAssertEqual(try file.tensor("h").scalars, [1, -2, 0x1p-24, .infinity, -65504, -0.0])
        XCTAssertEqual(try file.tensor("h").shape, [3, 2])
        XCTAssertEqual(try file.tensor("b").scalars, [1, Float(bitPattern: 0x0001_0000), -.infinity])
        XCTAssertEqual(try file.tensor("d").scalars, [Float(0.1), -.infinity, 3])
        XCTAssertEqual(try file.info("i").dtype, .i32)
        XCTAssertEqual(try file.tensor("empty").shape, [0, 4])
        // Header: 8-byte aligned, padded with spaces; data ordered F64, F32/I32, F16/BF16, U8, then by name.
        let raw = try Data(contentsOf: url)
        let n = Int(raw.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual(n % 8, 0)
        let order = file.names.sorted { try! file.info($0).dataOffsets.lowerBound < file.info($1).dataOffsets.lowerBound }
        XCTAssertEqual(order, ["d", "empty", "i", "w", "b", "h", "codes"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["t.safetensors"])
    }

    func testUncommittedWriterLeavesNoFile() throws {
        let dir = try makeTempDirectory(self)
        do {
            let writer = try SafeTensorsWriter(url: dir.appendingPathComponent("never.safetensors"))
            try writer.add("w", floats: [1, 2], shape: [2])
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testHalfConversionMatchesFloat16ForEveryBitPattern() {
        for bits in 0...UInt16.max {
            let mine = floatFromHalfBits(bits)
            let expected = Float(Float16(bitPattern: bits))
            if expected.isNaN {
                XCTAssert(mine.isNaN && mine.sign == expected.sign, "NaN \(bits)")
                XCTAssertEqual(mine.bitPattern & 0x007F_FFFF, UInt32(bits & 0x3FF) << 13, "NaN payload \(bits)")
            } else if mine.bitPattern != expected.bitPattern {
                return XCTFail("half 0x\(String(bits, radix: 16)): \(mine) vs \(expected)")
            }
        }
    }

    func testBFloat16Conversion() {
        XCTAssertEqual(floatFromBFloat16Bits(0x3F80), 1)
        XCTAssertEqual(floatFromBFloat16Bits(0xC049), Float(bitPattern: 0xC049_0000))
        XCTAssertEqual(floatFromBFloat16Bits(0x0001).bitPattern, 0x0001_0000) // subnormal
        XCTAssertEqual(floatFromBFloat16Bits(0x7F80), .infinity)
        XCTAssertEqual(floatFromBFloat16Bits(0xFF80), -.infinity)
        XCTAssert(floatFromBFloat16Bits(0x7FC1).isNaN)
        XCTAssertEqual(floatFromBFloat16Bits(0x8000).bitPattern, 0x8000_0000)
    }

    // MARK: bad input, one test per error

    let okEntry = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

    func testFileShorterThanLength() {
        assertMalformed(try SafeTensorsFile(data: Data([1, 0, 0]), path: "x"), field: "header length", reason: "too short")
    }

    func testTruncatedFile() throws {
        let full = try Reference.data("interop/adapter/adapter_model.safetensors")
        assertMalformed(try SafeTensorsFile(data: full.prefix(full.count - 100), path: "t"),
                        field: "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight.data_offsets",
                        reason: "beyond the data region")
    }

    func testHeaderLengthBeyondFile() {
        var d = image("{\(okEntry)}", data: [UInt8](repeating: 0, count: 8))
        d.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0, 0, 0, 0, 0, 0])
        assertMalformed(try SafeTensorsFile(data: d, path: "x"), field: "header length", reason: "only")
    }

    /// Another kind of file altogether is named as such, not as a truncated safetensors file.
    func testOtherFileKindsAreNotSafetensors() throws {
        let json = Data("{\n  \"format\": \"qlora-graph\", \"version\": 1}".utf8)
        XCTAssertThrowsError(try SafeTensorsFile(data: json, path: "g.json")) { e in
            XCTAssertEqual(e as? QLoraError, .wrongFileType(file: "g.json", expected: "safetensors",
                                                           reason: "it starts with the text \"{\\n  \\\"format\\\": \\\"qlora-gra…\" (a safetensors file starts with an 8-byte header length, then its JSON header)"))
            XCTAssert("\(e)".hasPrefix("g.json is not a safetensors file: it starts with the text"), "\(e)")
        }
        var npy = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, 0x76, 0])
        npy.append(Data(repeating: 0x20, count: 40))
        XCTAssertThrowsError(try SafeTensorsFile(data: npy, path: "x.npy")) { e in
            XCTAssert("\(e)".hasPrefix("x.npy is not a safetensors file: its first 8 bytes give a header length of"), "\(e)")
        }
    }

    func testOverlappingOffsets() {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
        assertMalformed(try open(h, data: [UInt8](repeating: 0, count: 12)), field: "b.data_offsets", reason: "overlaps 'a'")
    }

    func testOutOfRangeOffsets() {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"
        assertMalformed(try open(h, data: [UInt8](repeating: 0, count: 8)), field: "a.data_offsets", reason: "beyond the data region of 8 bytes")
    }

    func testGapBetweenTensors() {
        let h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}"
        assertMalformed(try open(h, data: [UInt8](repeating: 0, count: 6)), field: "b.data_offsets", reason: "gap of 2 bytes")
    }

    func testTrailingUncoveredBytes() {
        assertMalformed(try open("{\(okEntry)}", data: [UInt8](repeating: 0, count: 12)), field: "data region", reason: "4 bytes")
    }

    func testUnknownDType() {
        let h = "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}"
        assertMalformed(try open(h, data: [0, 0]), field: "a.dtype", reason: "unknown dtype \"F8_E4M3\"")
    }

    func testByteCountDisagreesWithShape() {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"
        assertMalformed(try open(h, data: [UInt8](repeating: 0, count: 8)), field: "a.data_offsets", reason: "needs 12")
    }

    func testNonJSONHeader() {
        assertMalformed(try open("garbage, not JSON", data: []), field: "header", reason: "invalid JSON at byte 0")
    }

    func testHeaderNotAnObject() {
        assertMalformed(try open("[1, 2]  ", data: []), field: "header", reason: "must be a JSON object")
    }

    func testNegativeAndFractionalShape() {
        let h1 = "{\"a\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,0]}}"
        assertMalformed(try open(h1, data: []), field: "a.shape", reason: "non-negative integers, got -2")
        let h2 = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,0]}}"
        assertMalformed(try open(h2, data: []), field: "a.shape", reason: "got 1.5")
    }

    func testDuplicateKey() {
        assertMalformed(try open("{\(okEntry),\(okEntry)}", data: [UInt8](repeating: 0, count: 8)), field: "header", reason: "duplicate key \"a\"")
    }

    func testMetadataMustBeStrings() {
        assertMalformed(try open("{\"__metadata__\":{\"format\":1},\(okEntry)}", data: [UInt8](repeating: 0, count: 8)),
                        field: "__metadata__.format", reason: "must be a string")
    }

    func testMissingAndUnknownFields() {
        assertMalformed(try open("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,0]}}", data: []), field: "a.shape", reason: "missing")
        assertMalformed(try open("{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"x\":1}}", data: [0]), field: "a.x", reason: "unknown field")
    }

    func testDeepNestingIsRejectedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        assertMalformed(try open("{\"__metadata__\":\(deep)}", data: []), field: "header", reason: "nesting deeper")
    }

    func testMissingTensorName() throws {
        let file = try open("{\(okEntry)}", data: [UInt8](repeating: 0, count: 8))
        assertMalformed(try file.tensor("b"), field: "b", reason: "no such tensor")
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try SafeTensorsFile(url: URL(fileURLWithPath: "/nonexistent/x.safetensors"))) { error in
            guard case QLoraError.io = error else { return XCTFail("\(error)") }
        }
    }
}
