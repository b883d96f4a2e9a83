import Foundation
import XCTest
import CQLoRAKernels
@testable import QLoRA

/// One case of manifest.json `weights` (bitsandbytes 0.50.2 output for a known f32 weight).
struct ReferenceWeightCase {
    let name: String
    let shape: [Int]
    let blockSize: Int
    let quantType: QuantType
    /// The case whose `W` file is quantized (itself unless `source_weight` says otherwise).
    let sourceWeight: String
    let files: [String: String]
    let sourceFiles: [String: String]

    var count: Int { shape.reduce(1, *) }
    var blocks: Int { (count + blockSize - 1) / blockSize }

    func file(_ key: String) throws -> String {
        guard let f = files[key] else {
            throw QLoraError.malformedFile(file: "manifest.json", field: "weights.\(name).files.\(key)", reason: "missing")
        }
        return f
    }
    func floats(_ key: String) throws -> [Float] { try Reference.floats(file(key)) }
    func bytes(_ key: String) throws -> [UInt8] { try Reference.bytes(file(key)) }

    /// The original f32 weight as a tensor of `shape`.
    func weight() throws -> Tensor {
        guard let f = sourceFiles["W"] else {
            throw QLoraError.malformedFile(file: "manifest.json", field: "weights.\(sourceWeight).files.W", reason: "missing")
        }
        return try Reference.tensor(f, shape: shape)
    }

    /// bnb's stored double-quant state.
    func storedDoubleQuantState() throws -> DoubleQuantState {
        DoubleQuantState(quantizedAbsmax: try bytes("dq_qabsmax"), absmax2: try floats("dq_absmax2"),
                         code2: try floats("dq_code2"), offset: try floats("dq_offset")[0], blockSize2: 256)
    }

    static func all() throws -> [ReferenceWeightCase] {
        let manifest = try Reference.manifest()
        guard let weights = manifest["weights"] as? [String: [String: Any]] else {
            throw QLoraError.malformedFile(file: "manifest.json", field: "weights", reason: "not an object")
        }
        func fileMap(_ entry: [String: Any]) -> [String: String] {
            let files = entry["files"] as? [String: [String: Any]] ?? [:]
            return files.compactMapValues { $0["file"] as? String }
        }
        return try weights.keys.sorted().map { name in
            let entry = weights[name]!
            guard let shape = entry["shape"] as? [Int], let blockSize = entry["blocksize"] as? Int,
                  let typeName = entry["quant_type"] as? String, let type = QuantType(rawValue: typeName) else {
                throw QLoraError.malformedFile(file: "manifest.json", field: "weights.\(name)", reason: "shape/blocksize/quant_type")
            }
            let source = entry["source_weight"] as? String ?? name
            guard let sourceEntry = weights[source] else {
                throw QLoraError.malformedFile(file: "manifest.json", field: "weights.\(name).source_weight", reason: "unknown \(source)")
            }
            return ReferenceWeightCase(name: name, shape: shape, blockSize: blockSize, quantType: type, sourceWeight: source,
                                       files: fileMap(entry), sourceFiles: fileMap(sourceEntry))
        }
    }
}

/// Asserts identical byte arrays, reporting the first difference.
func assertBytesIdentical(_ a: [UInt8], _ b: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where a[i] != b[i] {
        XCTFail("\(what): first difference at \(i): \(a[i]) vs \(b[i])", file: file, line: line)
        return
    }
}

/// Every weight case of the reference manifest, quantized and dequantized by our kernels and
/// compared bit for bit with bitsandbytes 0.50.2 (the canonical files: flat blocks crossing rows,
/// not `dequant_bnb_cpu_native`).
final class QuantizationReferenceTests: XCTestCase {
    var cases: [ReferenceWeightCase] = []

    override func setUpWithError() throws {
        cases = try ReferenceWeightCase.all()
    }

    func testManifestHasEveryExpectedCase() {
        let names = Set(cases.map(\.name))
        for expected in ["w96x160", "w256x512", "w100x70", "w33x33", "w256x512_fp4", "w100x70_fp4", "w256x512_nf4_bs128"] {
            XCTAssertTrue(names.contains(expected), "manifest lacks \(expected)")
        }
        // The cases cover both types, both block sizes, odd counts, partial blocks and cols % 64 != 0.
        XCTAssertTrue(cases.contains { $0.quantType == .fp4 })
        XCTAssertTrue(cases.contains { $0.blockSize == 128 })
        XCTAssertTrue(cases.contains { $0.count % 2 == 1 })
        XCTAssertTrue(cases.contains { $0.count % $0.blockSize != 0 })
    }

    func testCodebooksMatchReferenceFiles() throws {
        let nf4 = try Reference.floats("nf4_code.f32"), fp4 = try Reference.floats("fp4_code.f32")
        assertBitIdentical(QuantizedTensor.codebook(.nf4), nf4, "nf4 codebook")
        assertBitIdentical(QuantizedTensor.codebook(.fp4), fp4, "fp4 codebook")
        XCTAssertEqual(QuantizedTensor.codebook(.fp4)[8].bitPattern, 0, "fp4 code 8 is +0.0")
        // manifest quantize_tables.*.code_hex, the same values as hex bit patterns.
        let tables = try XCTUnwrap(try Reference.manifest()["quantize_tables"] as? [String: [String: Any]])
        for type in QuantType.allCases {
            let hex = try XCTUnwrap(tables[type.rawValue]?["code_hex"] as? [String])
            XCTAssertEqual(QuantizedTensor.codebook(type).map { String(format: "%08x", $0.bitPattern) }, hex, "\(type) code_hex")
        }
    }

    func testDynamicMapMatchesStoredCode2() throws {
        var code = [Float](repeating: 0, count: 256)
        code.withUnsafeMutableBufferPointer { cq_dynamic_map($0.baseAddress) }
        for c in cases { assertBitIdentical(code, try c.floats("dq_code2"), "\(c.name): create_dynamic_map vs dq_code2") }
        XCTAssertEqual(Double(code[0]), -0.992968738079071)
        XCTAssertEqual(code[255], 1)
        XCTAssertEqual(code.filter { $0 == 0 }.count, 1)
        XCTAssertEqual(code, code.sorted())
    }

    func testPlainQuantizationIsBitExactForEveryCase() throws {
        XCTAssertFalse(cases.isEmpty)
        for c in cases {
            let w = try c.weight()
            for threads in [1, 2] {
                let q = try QuantizedTensor.quantize(w, quantType: c.quantType, blockSize: c.blockSize, doubleQuant: false,
                                                     name: c.name, threads: threads)
                assertBytesIdentical(q.packed, try c.bytes("packed"), "\(c.name) packed (threads \(threads))")
                guard case let .plain(absmax) = q.statistics else { return XCTFail("\(c.name): expected plain statistics") }
                assertBitIdentical(absmax, try c.floats("absmax"), "\(c.name) absmax (threads \(threads))")
                assertBitIdentical(q.dequantize(threads: threads).scalars, try c.floats("dequant"),
                                   "\(c.name) dequant (threads \(threads))")
            }
        }
    }

    /// w96x160 (in_features % 64 != 0): bnb's own CPU kernel indexes absmax per row and is wrong;
    /// we follow the canonical flat blocks.
    func testW96x160FollowsCanonicalFlatBlocksNotBnbCPUKernel() throws {
        let c = try XCTUnwrap(cases.first { $0.name == "w96x160" })
        let ours = try QuantizedTensor.quantize(try c.weight(), quantType: c.quantType, blockSize: c.blockSize,
                                                doubleQuant: false, name: c.name).dequantize().scalars
        assertBitIdentical(ours, try c.floats("dequant"), "w96x160 canonical dequant")
        let native = try c.floats("dequant_bnb_cpu_native")
        let differing = zip(ours, native).filter { $0.bitPattern != $1.bitPattern }.count
        XCTAssertEqual(differing, 13859, "manifest notes 13859/15360 elements differ from bnb's CPU kernel")
    }

    /// With bnb's stored f32 offset, our 8-bit double quantization reproduces its state exactly.
    func testDoubleQuantWithStoredOffsetIsBitExactForEveryCase() throws {
        for c in cases {
            let stored = try c.storedDoubleQuantState()
            let state = DoubleQuantState.quantize(absmax: try c.floats("absmax"), offset: stored.offset)
            assertBitIdentical(state.code2, stored.code2, "\(c.name) code2")
            assertBytesIdentical(state.quantizedAbsmax, stored.quantizedAbsmax, "\(c.name) qabsmax (stored offset)")
            assertBitIdentical(state.absmax2, stored.absmax2, "\(c.name) absmax2 (stored offset)")
            assertBitIdentical(state.decodedAbsmax(), try c.floats("dq_absmax_dequant"), "\(c.name) absmax dequant (stored offset)")
        }
    }

    /// Decoding bnb's STORED state (dq_qabsmax, dq_absmax2, dq_code2, dq_offset) with its packed
    /// codes reproduces dq_absmax_dequant and dq_dequant exactly.
    func testDecodingStoredStateReproducesReference() throws {
        for c in cases {
            let stored = try c.storedDoubleQuantState()
            let q = try QuantizedTensor(shape: c.shape, quantType: c.quantType, blockSize: c.blockSize,
                                        packed: try c.bytes("packed"), statistics: .double(stored), name: c.name)
            assertBitIdentical(q.absmaxValues(), try c.floats("dq_absmax_dequant"), "\(c.name) stored absmax dequant")
            for threads in [1, 2] {
                assertBitIdentical(q.dequantize(threads: threads).scalars, try c.floats("dq_dequant"),
                                   "\(c.name) stored dq_dequant (threads \(threads))")
            }
            let plain = try QuantizedTensor(shape: c.shape, quantType: c.quantType, blockSize: c.blockSize,
                                            packed: try c.bytes("packed"), statistics: .plain(absmax: try c.floats("absmax")))
            assertBitIdentical(plain.dequantize().scalars, try c.floats("dequant"), "\(c.name) stored plain dequant")
        }
    }

    /// Full double quantization from W, bit for bit: the offset is torch's float32 mean of the
    /// absmax (torch_f32_sum.c), so qabsmax, absmax2, the decoded absmax and the dequantized
    /// weight all equal bitsandbytes' stored state.
    func testDoubleQuantizationFromWeightsForEveryCase() throws {
        for c in cases {
            let q = try QuantizedTensor.quantize(try c.weight(), quantType: c.quantType, blockSize: c.blockSize,
                                                 doubleQuant: true, name: c.name)
            guard case let .double(ours) = q.statistics else { return XCTFail("\(c.name): expected double quant") }
            let ref = try c.storedDoubleQuantState()
            assertBytesIdentical(q.packed, try c.bytes("packed"), "\(c.name) packed")
            assertBitIdentical(ours.code2, ref.code2, "\(c.name) code2")
            XCTAssertEqual(ours.blockSize2, 256)
            XCTAssertEqual(ours.offset.bitPattern, ref.offset.bitPattern, "\(c.name) offset \(ours.offset) vs \(ref.offset)")
            assertBytesIdentical(ours.quantizedAbsmax, ref.quantizedAbsmax, "\(c.name) qabsmax")
            assertBitIdentical(ours.absmax2, ref.absmax2, "\(c.name) absmax2")
            assertBitIdentical(ours.decodedAbsmax(), try c.floats("dq_absmax_dequant"), "\(c.name) absmax dequant")
            assertBitIdentical(q.dequantize().scalars, try c.floats("dq_dequant"), "\(c.name) dq_dequant")
        }
    }
}
