import CQLoRAKernels
import Foundation
import XCTest
@testable import QLoRA

/// `OrderedGradientSum` without MPI: ranks as threads of this process over an in-memory
/// `Collective`. Every rank ends with the bits of one process folding all N·k weighted gradients
/// left to right (`cq_accumulate_scaled`, as `Trainer` accumulates), across several chunks.
final class OrderedGradientSumTests: XCTestCase {
    /// Point-to-point mailboxes and a broadcast slot shared by `size` thread ranks.
    final class Mailboxes: @unchecked Sendable {
        let size: Int
        private let condition = NSCondition()
        private var queues: [String: [[Float]]] = [:]
        init(size: Int) { self.size = size }
        func post(_ key: String, _ value: [Float]) {
            condition.lock()
            queues[key, default: []].append(value)
            condition.broadcast()
            condition.unlock()
        }
        func take(_ key: String) -> [Float] {
            condition.lock()
            defer { condition.unlock() }
            while queues[key]?.isEmpty ?? true { condition.wait() }
            return queues[key]!.removeFirst()
        }
    }

    final class ThreadRank: Collective {
        let rank: Int, boxes: Mailboxes
        var size: Int { boxes.size }
        init(rank: Int, boxes: Mailboxes) { self.rank = rank; self.boxes = boxes }
        func allGather(_ local: [Double]) throws -> [Double] {
            for r in 0..<size { boxes.post("gather\(r)<-\(rank)", local.map(Float.init)) }
            return (0..<size).flatMap { r in boxes.take("gather\(rank)<-\(r)").map(Double.init) }
        }
        func send(_ buffer: UnsafeBufferPointer<Float>, to peer: Int) throws { boxes.post("\(rank)->\(peer)", Array(buffer)) }
        func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from peer: Int) throws {
            let v = boxes.take("\(peer)->\(rank)")
            XCTAssertEqual(v.count, buffer.count)
            _ = buffer.update(fromContentsOf: v)
        }
        func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
            if rank == root {
                for r in 0..<size where r != root { boxes.post("bcast->\(r)", Array(buffer)) }
            } else {
                _ = buffer.update(fromContentsOf: boxes.take("bcast->\(rank)"))
            }
        }
        func barrier() throws { _ = try allGather([]) }
    }

    func testEveryRankGetsTheSingleProcessFoldBitForBit() throws {
        let count = OrderedGradientSum.chunk * 2 + 1234   // three chunks, the last one short
        for (ranks, perRank) in [(2, 1), (3, 2), (4, 1)] {
            var rng = SeededRandom(seed: UInt64(ranks * 10 + perRank))
            let total = ranks * perRank
            let grads = (0..<total).map { _ in rng.floats(count, scale: 3) }
            let weights = (0..<total).map { _ in Float(rng.floats(1, scale: 1)[0].magnitude + 0.1) }
            // One process: acc = w0·g0, acc += w1·g1, … (the Trainer's accumulation).
            var expected = [Float](repeating: 0, count: count)
            for j in 0..<total {
                cq_accumulate_scaled(&expected, grads[j], weights[j], j == 0 ? 1 : 0, Int64(count), 2)
            }
            let boxes = Mailboxes(size: ranks)
            let results = ResultBox(ranks)
            // One thread per rank (they block on each other, so not a bounded pool).
            let done = DispatchSemaphore(value: 0)
            for r in 0..<ranks { Thread.detachNewThread {
                defer { done.signal() }
                let rank = ThreadRank(rank: r, boxes: boxes)
                var sum = [Float](repeating: 0, count: count)
                var weighted: [[Float]] = []
                for j in (r * perRank)..<((r + 1) * perRank) {
                    if r == 0 {
                        cq_accumulate_scaled(&sum, grads[j], weights[j], j == 0 ? 1 : 0, Int64(count), 1)
                    } else {
                        var w = [Float](repeating: 0, count: count)
                        cq_accumulate_scaled(&w, grads[j], weights[j], 1, Int64(count), 1)
                        weighted.append(w)
                    }
                }
                do {
                    try OrderedGradientSum.reduce(&sum, weighted: weighted, collective: rank, threads: 1)
                    results.set(r, sum)
                } catch {
                    XCTFail("rank \(r): \(error)")
                }
            } }
            for _ in 0..<ranks { done.wait() }
            for r in 0..<ranks {
                let got = results.get(r)
                XCTAssertEqual(got.count, count)
                XCTAssert(got.map(\.bitPattern) == expected.map(\.bitPattern), "\(ranks) ranks × \(perRank): rank \(r) differs from the single-process fold")
            }
            // The order matters: summing per rank first, then across ranks, changes some bits.
            var perRankFirst = [Float](repeating: 0, count: count)
            for r in 0..<ranks {
                var part = [Float](repeating: 0, count: count)
                for j in (r * perRank)..<((r + 1) * perRank) {
                    cq_accumulate_scaled(&part, grads[j], weights[j], j == r * perRank ? 1 : 0, Int64(count), 1)
                }
                cq_accumulate_scaled(&perRankFirst, part, 1, r == 0 ? 1 : 0, Int64(count), 1)
            }
            if perRank > 1 { XCTAssertNotEqual(perRankFirst.map(\.bitPattern), expected.map(\.bitPattern), "a tree order differs somewhere") }
        }
    }

    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [[Float]]
        init(_ n: Int) { values = Array(repeating: [], count: n) }
        func set(_ i: Int, _ v: [Float]) { lock.lock(); values[i] = v; lock.unlock() }
        func get(_ i: Int) -> [Float] { lock.lock(); defer { lock.unlock() }; return values[i] }
    }
}
