import Foundation
import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The manifest's rules at the edges the reference weights never reach: values exactly on a
/// bound, the partial block's division, the padding nibble, fp4's two zero codes, and the 8-bit
/// double-quant index rule over its whole range.
final class QuantizationRulesTests: XCTestCase {
    struct Table { let code: [Float]; let order: [Int]; let bounds: [Float] }

    /// manifest quantize_tables.<type>: order and bounds (as hex bit patterns).
    func table(_ type: QuantType) throws -> Table {
        let tables = try XCTUnwrap(try Reference.manifest()["quantize_tables"] as? [String: [String: Any]])
        let t = try XCTUnwrap(tables[type.rawValue])
        let order = try XCTUnwrap(t["order"] as? [Int])
        let hex = try XCTUnwrap(t["bounds_hex"] as? [String])
        let bounds = hex.map { Float(bitPattern: UInt32($0, radix: 16)!) }
        XCTAssertEqual(bounds.count, 15)
        return Table(code: QuantizedTensor.codebook(type), order: order, bounds: bounds)
    }

    func nibbles(_ q: QuantizedTensor) -> [Int] {
        (0..<q.count).map { j in Int(j & 1 == 0 ? q.packed[j >> 1] >> 4 : q.packed[j >> 1] & 0x0F) }
    }

    /// The bounds are (sorted[j] + sorted[j+1]) / 2 in f32, as listed in the manifest.
    func testBoundsAreFloat32Midpoints() throws {
        for type in QuantType.allCases {
            let t = try table(type)
            for j in 0..<15 {
                let mid = (t.code[t.order[j]] + t.code[t.order[j + 1]]) / 2
                XCTAssertEqual(mid.bitPattern, t.bounds[j].bitPattern, "\(type) bound \(j)")
            }
        }
    }

    /// With absmax 1 a full block scales by exactly 1, so s = w: a value ON bound j goes to the
    /// lower sorted position (order[j]), its f32 successor to order[j + 1]. This pins every bound
    /// to the bit.
    func testValuesOnABoundGoToTheLowerPosition() throws {
        for type in QuantType.allCases {
            let t = try table(type)
            var w = [Float](repeating: 0, count: 64)
            w[0] = 1 // absmax 1
            for j in 0..<15 {
                w[1 + 2 * j] = t.bounds[j]
                w[2 + 2 * j] = t.bounds[j].nextUp
            }
            w[31] = -1
            let q = try QuantizedTensor.quantize(try Tensor(shape: [1, 64], scalars: w), quantType: type, doubleQuant: false)
            let n = nibbles(q)
            XCTAssertEqual(n[0], t.order[15], "\(type): 1.0")
            XCTAssertEqual(n[31], t.order[0], "\(type): -1.0")
            for j in 0..<15 {
                XCTAssertEqual(n[1 + 2 * j], t.order[j], "\(type): on bound \(j) (\(t.bounds[j]))")
                XCTAssertEqual(n[2 + 2 * j], t.order[j + 1], "\(type): just above bound \(j)")
            }
        }
    }

    /// conventions.nf4_quantize: full blocks use s = w * (1/absmax), the partial last block
    /// s = w / absmax. Values are searched for where the two land on different sides of a bound.
    func testPartialBlockDividesFullBlockMultiplies() throws {
        for type in QuantType.allCases {
            let t = try table(type)
            var found: (m: Float, w: Float, k: Int)?
            search: for m: Float in [0.7, 3, 7, 0.3, 1.7, 11, 0.09] {
                let recip = 1 / m
                for k in 0..<15 {
                    var w = t.bounds[k] * m
                    for _ in 0..<8 { w = w.nextDown }
                    for _ in 0..<17 {
                        if abs(w) <= m, (w / m <= t.bounds[k]) != (w * recip <= t.bounds[k]) { found = (m, w, k); break search }
                        w = w.nextUp
                    }
                }
            }
            let (m, w, _) = try XCTUnwrap(found, "\(type): no distinguishing value found")
            // Block 0 (full) and block 1 (partial, 33 elements: also an odd count) both hold m and w.
            var x = [Float](repeating: 0, count: 97)
            x[0] = m; x[1] = w
            x[64] = m; x[65] = w
            let q = try QuantizedTensor.quantize(try Tensor(shape: [97], scalars: x), quantType: type, doubleQuant: false)
            func rule(_ s: Float) -> Int { t.order[t.bounds.filter { $0 < max(-1, min(1, s)) }.count] }
            let n = nibbles(q)
            XCTAssertEqual(n[1], rule(w * (1 / m)), "\(type): full block multiplies by the reciprocal")
            XCTAssertEqual(n[65], rule(w / m), "\(type): partial block divides")
            XCTAssertNotEqual(n[1], n[65], "\(type): the chosen value distinguishes the rules")
        }
    }

    /// conventions.nf4_packing / fp4_packing: the padding nibble of an odd count is quantize(0).
    func testPaddingNibbleIsQuantizedZero() throws {
        for (type, pad) in [(QuantType.nf4, UInt8(7)), (.fp4, 0)] {
            var rng = SeededRandom(seed: 11)
            let q = try QuantizedTensor.quantize(try Tensor(shape: [3, 5], scalars: rng.floats(15)), quantType: type)
            XCTAssertEqual(q.packed.count, 8)
            XCTAssertEqual(q.packed[7] & 0x0F, pad, "\(type)")
        }
    }

    /// conventions.fp4_quantize: s in (-0.0026, 0] (incl. ±0) -> nibble 0, s in (0, 0.0026] ->
    /// nibble 8; both decode to +0.0.
    func testFP4TinyValuesAndZeroCodes() throws {
        let x: [Float] = [1, 0, -0.0, 0.001, -0.001, 0.0026, -0.0026, 0.003, -0.003, 1e-30, -1e-30]
        let q = try QuantizedTensor.quantize(try Tensor(shape: [x.count], scalars: x), quantType: .fp4, doubleQuant: false)
        XCTAssertEqual(Array(nibbles(q)[1...10]), [0, 0, 8, 0, 8, 0, 1, 9, 8, 0])
        let back = q.dequantize().scalars
        for j in [1, 2, 3, 4, 9, 10] { XCTAssertEqual(back[j].bitPattern, 0, "element \(j) decodes to +0.0") }
    }

    /// conventions.double_quant's 8-bit index, re-implemented here from its wording and compared
    /// over every LUT cell: offset 0 and a block holding -1 make absmax2 = 1 and s = a exactly.
    func testDoubleQuantIndexRuleOverWholeRange() throws {
        var code = [Float](repeating: 0, count: 256)
        code.withUnsafeMutableBufferPointer { cq_dynamic_map($0.baseAddress) }
        var lut = [UInt8](repeating: 0, count: 65536)
        for i in 0..<65536 {
            let v = -1 + 2 * Float(i) / 65535
            var best = 0
            for c in 1..<256 where abs(code[c] - v) < abs(code[best] - v) { best = c } // ties: lower index
            lut[i] = UInt8(best)
        }
        // Every LUT cell's centre, a value just inside each cell edge, and the code values themselves.
        var a: [Float] = [-1]
        for i in 0..<65536 {
            let v = -1 + 2 * Float(i) / 65535
            a += [v, v.nextUp, v.nextDown].filter { abs($0) <= 1 }
        }
        a += code
        let state = DoubleQuantState.quantize(absmax: a, offset: 0, blockSize2: a.count)
        XCTAssertEqual(state.absmax2, [1])
        var mismatches = 0
        for (i, value) in a.enumerated() {
            let s = max(-1, min(1, value * (1 / Float(1))))
            let index = UInt16((s + 1) * 0.5 * 65535 + 0.5)
            if state.quantizedAbsmax[i] != lut[Int(index)] { mismatches += 1 }
        }
        XCTAssertEqual(mismatches, 0)
    }
}
