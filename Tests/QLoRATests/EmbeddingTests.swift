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
}
