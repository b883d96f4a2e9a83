import XCTest
@testable import QLoRA

/// The exact int8 form of a frozen f32 matrix (what a GGUF Q8_0 lm_head dequantizes to): found only
/// when every value is d·q bit for bit, and a small-M matmul reading it gives the f32 product's
/// bits (the same matrix as a trainable parameter, which never has the form, is the reference),
/// for 1 and 2 threads, K with and without a partial last block. `assign` keeps it in step.
final class ExactInt8FormTests: XCTestCase {
    /// Q8_0-style values [rows, cols]: per 32-block an f16 scale d and integers q in [-127, 127]
    /// (one of them ±127), each value Float(q)·d as ggml dequantizes them.
    func q8Values(rows: Int, cols: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        var out = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for b0 in stride(from: 0, to: cols, by: 32) {
                let d = Float(Float16(abs(rng.float(0.01)) + 1e-4))
                for k in b0..<min(b0 + 32, cols) {
                    let q = k == b0 ? (rng.float() < 0 ? -127 : 127) : Int((rng.float() * 127).rounded(.towardZero))
                    out[r * cols + k] = Float(q) * d
                }
            }
        }
        return out
    }

    func product(_ weight: ParameterStorage, _ x: Tensor, threads: Int) throws -> (values: [Float], summary: String) {
        let g = Graph()
        g.output("y", try g.matmul(g.input("x", shape: x.shape), g.parameter(weight)))
        let plan = try g.compile(CompileOptions(threads: threads))
        return (try plan.run(["x": x])["y"]!.scalars, plan.summary)
    }

    func testSmallMProductsReadTheFormWithTheF32Bits() throws {
        for (rows, cols) in [(2048, 576), (1200, 900)] {
            let values = try Tensor(shape: [rows, cols], scalars: q8Values(rows: rows, cols: cols, seed: UInt64(cols)))
            let frozen = try ParameterStorage(name: "lm_head", tensor: values, trainable: false)
            let twin = try ParameterStorage(name: "lm_head_f32", tensor: values, trainable: true)
            XCTAssertNotNil(frozen.exactInt8, "\(rows)x\(cols)")
            XCTAssertNil(twin.exactInt8)
            var rng = SeededRandom(seed: 5)
            for m in [1, 3, 9] {
                let x = try Tensor(shape: [m, cols], scalars: rng.floats(m * cols))
                for threads in [1, 2] {
                    let (y, summary) = try product(frozen, x, threads: threads)
                    XCTAssertEqual(summary.contains("matmul(exact int8 rows)"), m < 8, summary)
                    XCTAssertEqual(y, try product(twin, x, threads: threads).values, "M = \(m), \(threads) threads")
                }
            }
        }
    }

    func testOtherValuesHaveNoFormAndAssignKeepsItInStep() throws {
        var rng = SeededRandom(seed: 8)
        let shape = [2048, 576]
        let plain = try ParameterStorage(name: "w", tensor: Tensor(shape: shape, scalars: rng.floats(2048 * 576)), trainable: false)
        XCTAssertNil(plain.exactInt8, "random f32 values are not d·q")
        var almost = q8Values(rows: 2048, cols: 576, seed: 9)
        almost[12345] = almost[12345].nextUp
        XCTAssertNil(try ParameterStorage(name: "w", tensor: Tensor(shape: shape, scalars: almost), trainable: false).exactInt8,
                     "one value off by an ulp")

        // A plan compiled while the form existed follows the new values after assign.
        let q8 = try Tensor(shape: shape, scalars: q8Values(rows: 2048, cols: 576, seed: 10))
        let weight = try ParameterStorage(name: "w", tensor: q8, trainable: false)
        let g = Graph()
        g.output("y", try g.matmul(g.input("x", shape: [1, 576]), g.parameter(weight)))
        let plan = try g.compile(CompileOptions(threads: 2))
        let x = try Tensor(shape: [1, 576], scalars: rng.floats(576))
        let random = try Tensor(shape: shape, scalars: rng.floats(2048 * 576))
        try weight.assign(random)
        XCTAssertNil(weight.exactInt8)
        let reference = try ParameterStorage(name: "ref", tensor: random, trainable: true)
        XCTAssertEqual(try plan.run(["x": x])["y"]!.scalars, try product(reference, x, threads: 2).values)
        try weight.assign(q8)
        XCTAssertNotNil(weight.exactInt8)
        let q8Reference = try ParameterStorage(name: "ref", tensor: q8, trainable: true)
        XCTAssertEqual(try plan.run(["x": x])["y"]!.scalars, try product(q8Reference, x, threads: 2).values)
    }
}
