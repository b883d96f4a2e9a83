import XCTest
import CQLoRAKernels
@testable import QLoRA

final class QuantizedTensorTests: XCTestCase {
    func randomWeight(_ shape: [Int], seed: UInt64, scale: Float = 0.05) throws -> Tensor {
        var rng = SeededRandom(seed: seed)
        return try Tensor(shape: shape, scalars: rng.floats(shape.reduce(1, *), scale: scale))
    }

    func testBitsPerParameter() throws {
        let w = try randomWeight([256, 512], seed: 1)
        let plain = try QuantizedTensor.quantize(w, blockSize: 64, doubleQuant: false)
        XCTAssertEqual(plain.bitsPerParameter, 4.5)
        let double = try QuantizedTensor.quantize(w, blockSize: 64, doubleQuant: true)
        let doubleBits: Double = 4 + 8.0 / 64 + 32.0 / 16384 // 8-bit index per block + f32 per 256 blocks
        XCTAssertEqual(double.bitsPerParameter, doubleBits)
        XCTAssertEqual(double.bitsPerParameter, 4.127, accuracy: 0.001)
        let plain128 = try QuantizedTensor.quantize(w, blockSize: 128, doubleQuant: false)
        XCTAssertEqual(plain128.bitsPerParameter, 4.25)
    }

    func testMemoryBytes() throws {
        let w = try randomWeight([256, 512], seed: 2)
        let plain = try QuantizedTensor.quantize(w, blockSize: 64, doubleQuant: false)
        XCTAssertEqual(plain.packed.count, 65536)
        XCTAssertEqual(plain.memoryBytes, 65536 + 2048 * 4)
        let double = try QuantizedTensor.quantize(w, blockSize: 64, doubleQuant: true)
        // packed + one byte per block + one f32 per 256 blocks + the 256-entry code + the offset
        XCTAssertEqual(double.memoryBytes, 65536 + 2048 + 8 * 4 + 256 * 4 + 4)
        // Odd count: (n + 1) / 2 bytes, 18 blocks of 64.
        let odd = try QuantizedTensor.quantize(try randomWeight([33, 33], seed: 3), doubleQuant: false)
        XCTAssertEqual(odd.memoryBytes, 545 + 18 * 4)
    }

    func testNonFiniteWeightsNameTensorAndFirstIndex() throws {
        for bad in [Float.nan, Float.infinity, -Float.infinity] {
            var scalars = try randomWeight([40, 70], seed: 4).scalars
            scalars[3 * 70 + 5] = bad
            scalars[30 * 70 + 1] = .nan // a later one must not be the one reported
            let w = try Tensor(shape: [40, 70], scalars: scalars)
            XCTAssertThrowsError(try QuantizedTensor.quantize(w, name: "layers.0.mlp.up_proj.weight")) { error in
                guard case let QLoraError.quantization(tensor, reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(tensor, "layers.0.mlp.up_proj.weight")
                XCTAssertTrue(reason.contains("index \(3 * 70 + 5)"), reason)
                XCTAssertTrue(reason.contains("row 3, column 5"), reason)
                XCTAssertTrue("\(error)".contains("layers.0.mlp.up_proj.weight"))
            }
        }
    }

    /// A large tensor takes the parallel path: the first bad index wins whichever thread sees it.
    func testFirstNonFiniteIndexOnParallelPath() throws {
        var scalars = try randomWeight([512, 300], seed: 5).scalars
        scalars[150_000] = .nan     // second thread's half
        scalars[70_001] = .infinity // first thread's half, earlier: the one reported
        scalars[149_999] = .nan
        let w = try Tensor(shape: [512, 300], scalars: scalars)
        for threads in [1, 2] {
            XCTAssertThrowsError(try QuantizedTensor.quantize(w, name: "big", threads: threads)) { error in
                guard case let QLoraError.quantization(tensor, reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(tensor, "big")
                XCTAssertTrue(reason.contains("index 70001"), reason)
                XCTAssertTrue(reason.contains("inf"), reason)
            }
        }
    }

    func testUnsupportedBlockSizes() throws {
        let w = try randomWeight([8, 64], seed: 6)
        for bs in [48, 16, 0, -64, 8192, 96] {
            XCTAssertThrowsError(try QuantizedTensor.quantize(w, blockSize: bs), "block size \(bs)") { error in
                guard case let QLoraError.invalidConfig(field, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(field, "blockSize")
            }
        }
        for bs in [32, 64, 128, 256, 512, 1024, 2048, 4096] {
            XCTAssertNoThrow(try QuantizedTensor.quantize(w, blockSize: bs), "block size \(bs)")
        }
    }

    func testEmptyTensorIsRejected() throws {
        XCTAssertThrowsError(try QuantizedTensor.quantize(Tensor.zeros(shape: [0, 4]), name: "empty")) { error in
            guard case let QLoraError.quantization(tensor, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(tensor, "empty")
        }
    }

    func testInitChecksSizes() throws {
        let q = try QuantizedTensor.quantize(try randomWeight([10, 10], seed: 7), doubleQuant: true)
        XCTAssertThrowsError(try QuantizedTensor(shape: [10, 10], quantType: .nf4, blockSize: 64,
                                                 packed: Array(q.packed.dropLast()), statistics: q.statistics))
        XCTAssertThrowsError(try QuantizedTensor(shape: [10, 10], quantType: .nf4, blockSize: 32,
                                                 packed: q.packed, statistics: q.statistics))
        XCTAssertNoThrow(try QuantizedTensor(shape: [10, 10], quantType: .nf4, blockSize: 64,
                                             packed: q.packed, statistics: q.statistics))
    }

    /// Quantization is a function of the weight alone: thread count changes nothing.
    func testQuantizeIndependentOfThreads() throws {
        let w = try randomWeight([301, 263], seed: 8)
        for type in QuantType.allCases {
            let one = try QuantizedTensor.quantize(w, quantType: type, threads: 1)
            let two = try QuantizedTensor.quantize(w, quantType: type, threads: 2)
            XCTAssertEqual(one, two, "\(type)")
        }
    }

    /// Dequantized values lie within half the widest codebook gap of the weight (times absmax),
    /// and an all-zero or constant block round-trips.
    func testRoundTripErrorBoundAndDegenerateBlocks() throws {
        var scalars = try randomWeight([64, 96], seed: 9).scalars
        for i in 0..<64 { scalars[i] = 0 }          // block 0: absmax 0 (scaling clamps to 1e-38)
        for i in 64..<128 { scalars[i] = -0.25 }    // block 1: constant, decodes to code -1 · 0.25
        let w = try Tensor(shape: [64, 96], scalars: scalars)
        for type in QuantType.allCases {
            let q = try QuantizedTensor.quantize(w, quantType: type, doubleQuant: false)
            let back = q.dequantize().scalars
            let absmax = q.absmaxValues()
            XCTAssertEqual(absmax[0], 0)
            XCTAssertTrue(back[0..<64].allSatisfy { $0 == 0 })
            XCTAssertTrue(back[64..<128].allSatisfy { $0 == -0.25 }, "\(type)")
            let code = QuantizedTensor.codebook(type).sorted()
            let maxGap = zip(code.dropFirst(), code).map { $0 - $1 }.max()!
            for j in 0..<back.count {
                XCTAssertLessThanOrEqual(abs(back[j] - scalars[j]), absmax[j / 64] * maxGap / 2 * 1.0001, "\(type) element \(j)")
            }
        }
    }

    func testDequantizeIntoAndRowsAgreeWithDequantize() throws {
        let q = try QuantizedTensor.quantize(try randomWeight([37, 51], seed: 10), quantType: .fp4, blockSize: 32)
        let full = q.dequantize().scalars
        var buffer = [Float](repeating: .nan, count: q.count)
        buffer.withUnsafeMutableBufferPointer { q.dequantize(into: $0, threads: 2) }
        assertBitIdentical(buffer, full, "dequantize(into:)")
        var rows = [Float](repeating: .nan, count: 5 * 51)
        rows.withUnsafeMutableBufferPointer { q.dequantizeRows(7, count: 5, into: $0) }
        assertBitIdentical(rows, Array(full[(7 * 51)..<(12 * 51)]), "dequantizeRows(7, count: 5)")
    }
}
