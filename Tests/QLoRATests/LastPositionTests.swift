import XCTest
@testable import QLoRA

/// `last_position` and the generator's lm_head on the last position only.
final class LastPositionTests: XCTestCase {
    /// The op copies row seq − 1 of every batch, bit for bit, for 1 and 2 threads.
    func testCopiesEachBatchsLastRow() throws {
        var rng = SeededRandom(seed: 3)
        let x = try Tensor(shape: [2, 5, 7], scalars: rng.floats(70))
        let expected = Array(x.scalars[28..<35]) + Array(x.scalars[63..<70])
        for threads in [1, 2] {
            let g = Graph()
            g.output("y", try g.lastPosition(g.input("x", shape: [2, 5, 7])))
            let y = try g.compile(CompileOptions(threads: threads)).run(["x": x])["y"]!
            XCTAssertEqual(y.shape, [2, 1, 7])
            assertBitIdentical(y.scalars, expected, "last rows, \(threads) threads")
        }
        let g = Graph()
        XCTAssertThrowsError(try g.lastPosition(g.input("x", shape: [5, 7]))) { e in XCTAssert("\(e)".contains("[batch, seq, width]"), "\(e)") }
    }

    /// The model recorded with `lastPositionOnly` gives the full forward's last-position logits
    /// (the lm_head runs as one GEMV row instead of a GEMM over the sequence: same dot products
    /// up to summation order, so within 1e-6 of max |logit|), for batch 2.
    func testLastPositionOnlyLogitsMatchTheFullForward() throws {
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let ids = try IntTensor(shape: [2, 9], scalars: [15, 0, 11, 15, 3, 7, 1, 2, 9, 4, 4, 8, 12, 0, 5, 6, 13, 14])
        let full = try model.logits(ids).scalars
        let vocab = model.config.vocabSize
        let g = Graph()
        g.output("logits", try model.record(inputIds: g.input("input_ids", shape: [2, 9], element: .int32), lastPositionOnly: true).logits)
        let last = try g.compile().run([:], ids: ["input_ids": ids])["logits"]!
        XCTAssertEqual(last.shape, [2, 1, vocab])
        assertClose(last.scalars, Array(full[(8 * vocab)..<(9 * vocab)]) + Array(full[(17 * vocab)...]), relative: 1e-6, "last-position logits")
    }
}
