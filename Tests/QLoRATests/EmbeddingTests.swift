import XCTest
@testable import QLoRA

/// embedding: int32 ids → rows of an f32 table (the worked example of an op over int32 values).
final class EmbeddingTests: XCTestCase {
    func plan(ids shape: [Int], vocab: Int, dim: Int, threads: Int, seed: UInt64 = 21) throws -> (ExecutablePlan, Tensor) {
        var rng = SeededRandom(seed: seed)
        let table = try Tensor(shape: [vocab, dim], scalars: rng.floats(vocab * dim))
        let g = Graph()
        let ids = g.input("ids", shape: shape, element: .int32)
        let rows = try g.embedding(ids, table: g.parameter(ParameterStorage(name: "table", tensor: table, trainable: true)), label: "embed")
        XCTAssertEqual(rows.shape, shape + [dim])
        g.output("rows", rows)
        return (try g.compile(CompileOptions(threads: threads)), table)
    }

    func testGathersTheRowsOfTheIds() throws {
        let (p, table) = try plan(ids: [2, 3], vocab: 10, dim: 4, threads: 2)
        let ids: [Int32] = [3, 0, 9, 3, 5, 1]
        let rows = try p.run([:], ids: ["ids": IntTensor(shape: [2, 3], scalars: ids)])["rows"]!
        XCTAssertEqual(rows.shape, [2, 3, 4])
        XCTAssertEqual(rows.scalars, ids.flatMap { table.scalars[Int($0) * 4..<Int($0) * 4 + 4] })
        XCTAssert(p.summary.contains("embedding"), p.summary)
    }

    func testBitwiseIdenticalForOneAndTwoThreads() throws {
        let count = 2048, vocab = 300, dim = 32   // 65536 floats: above the threading threshold
        var rng = SplitMix64(seed: 4)
        let ids = try IntTensor(shape: [count], scalars: (0..<count).map { _ in Int32(rng.next() % UInt64(vocab)) })
        let one = try plan(ids: [count], vocab: vocab, dim: dim, threads: 1).0.run([:], ids: ["ids": ids])["rows"]!
        let two = try plan(ids: [count], vocab: vocab, dim: dim, threads: 2).0.run([:], ids: ["ids": ids])["rows"]!
        XCTAssertEqual(one.scalars, two.scalars)
    }

    func testAnIdOutsideTheTableFailsTheRun() throws {
        let (p, _) = try plan(ids: [4], vocab: 10, dim: 4, threads: 1)
        for bad: Int32 in [10, -1] {
            XCTAssertThrowsError(try p.run([:], ids: ["ids": IntTensor(shape: [4], scalars: [1, 2, bad, 3])])) { e in
                XCTAssert("\(e)".contains("id \(bad) at flat index 2 is outside the table's 10 rows"), "\(e)")
            }
        }
    }

    func testTypeRuleAndFeedsAreChecked() throws {
        let g = Graph()
        let table = g.input("table", shape: [10, 4])
        XCTAssertThrowsError(try g.embedding(g.input("x", shape: [3]), table: table)) { XCTAssert("\($0)".contains("ids must be int32"), "\($0)") }
        let (p, _) = try plan(ids: [4], vocab: 10, dim: 4, threads: 1)
        XCTAssertThrowsError(try p.run([:])) { XCTAssert("\($0)".contains("missing int32 input 'ids'"), "\($0)") }
        XCTAssertThrowsError(try p.run([:], ids: ["ids": IntTensor(shape: [3], scalars: [1, 2, 3])])) { e in
            guard case QLoraError.shapeMismatch = e else { return XCTFail("\(e)") }
        }
    }

    func testBFloat16TableGivesItsRowsWidenedExactly() throws {
        var rng = SeededRandom(seed: 23)
        let values = rng.floats(40)
        let table = try ParameterStorage(name: "table", tensor: Tensor(shape: [10, 4], scalars: values), trainable: false, element: .bfloat16)
        let rounded = table.tensor.scalars
        // Stored values are bf16: 8 mantissa bits kept, rounded to nearest (within half a bf16 ulp).
        for (r, v) in zip(rounded, values) {
            XCTAssertEqual(r.bitPattern & 0xFFFF, 0)
            XCTAssertLessThanOrEqual(abs(r - v), abs(v) / 256)
        }
        let tie = try ParameterStorage(name: "tie", tensor: Tensor(shape: [2], scalars: [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000)]),
                                       trainable: false, element: .bfloat16)
        XCTAssertEqual(tie.tensor.scalars.map(\.bitPattern), [0x3F80_0000, 0x3F82_0000], "ties round to even")
        let g = Graph()
        let t = g.parameter(table)
        XCTAssertEqual(t.type.element, .bfloat16)
        g.output("rows", try g.embedding(g.input("ids", shape: [3], element: .int32), table: t))
        XCTAssert(g.text.contains(": bf16[10x4]  # table"), g.text)
        XCTAssertThrowsError(try g.relu(t)) { XCTAssert("\($0)".contains("must be f32"), "\($0)") }
        for threads in [1, 2] {
            let plan = try g.compile(CompileOptions(threads: threads))
            XCTAssertEqual(plan.persistentBytes, 40 * 2)
            let rows = try plan.run([:], ids: ["ids": IntTensor(shape: [3], scalars: [7, 0, 7])])["rows"]!
            XCTAssertEqual(rows.scalars, Array(rounded[28..<32] + rounded[0..<4] + rounded[28..<32]))
        }
    }
}
