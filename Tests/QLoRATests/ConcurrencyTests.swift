import XCTest
import Foundation
@testable import QLoRA

/// One compiled plan shared by many threads: concurrent runs with their own contexts give the
/// bits of serial runs; a context shared by two runs at once, or one too small for the plan, is
/// refused with an error instead of two runs writing one arena.
final class ConcurrencyTests: XCTestCase {
    /// A QuantizedLinear (NF4, double quant, LoRA, bias) followed by silu·mul, on two threads.
    func makePlan(threads: Int = 2) throws -> ExecutablePlan {
        var rng = SeededRandom(seed: 11)
        let w = try Tensor(shape: [96, 128], scalars: rng.floats(96 * 128, scale: 0.2))
        let layer = try QuantizedLinear(weight: w, bias: Tensor(shape: [96], scalars: rng.floats(96, scale: 0.1)),
                                        config: QLoraConfig(), name: "proj", seed: 5)
        try layer.setLoraWeights(a: layer.loraWeights.a, b: Tensor(shape: [96, 8], scalars: rng.floats(96 * 8, scale: 0.05)))
        let g = Graph()
        let x = g.input("x", shape: [6, 128])
        let y = try layer(x)
        g.output("y", try g.mul(try g.silu(y), y))
        return try g.compile(CompileOptions(threads: threads))
    }

    func inputs(_ count: Int) throws -> [Tensor] {
        try (0..<count).map { i in
            var rng = SeededRandom(seed: UInt64(100 + i))
            return try Tensor(shape: [6, 128], scalars: rng.floats(6 * 128))
        }
    }

    func testOnePlanFromEightTasksEachWithItsOwnContextMatchesSerialRuns() async throws {
        let plan = try makePlan()
        let xs = try inputs(8)
        let serial = try xs.map { try plan.run(["x": $0])["y"]!.scalars.map(\.bitPattern) }
        XCTAssertEqual(Set(serial).count, 8, "distinct inputs give distinct outputs (cross-talk would show)")
        let results = try await withThrowingTaskGroup(of: (Int, [[UInt32]]).self) { group in
            for i in 0..<8 {
                group.addTask {
                    let context = plan.makeContext()
                    var runs: [[UInt32]] = []
                    for _ in 0..<25 { runs.append(try plan.run(["x": xs[i]], context: context)["y"]!.scalars.map(\.bitPattern)) }
                    return (i, runs)
                }
            }
            var all: [Int: [[UInt32]]] = [:]
            for try await (i, runs) in group { all[i] = runs }
            return all
        }
        XCTAssertEqual(results.count, 8)
        for (i, runs) in results {
            for (k, bits) in runs.enumerated() { XCTAssertEqual(bits, serial[i], "task \(i) run \(k) differs from the serial run") }
        }
    }

    /// Without `context:`, runs share the plan's built-in context and are serialised: also exact.
    func testRunsWithoutAContextAreSerialisedAndExact() throws {
        let plan = try makePlan()
        let xs = try inputs(4)
        let serial = try xs.map { try plan.run(["x": $0])["y"]!.scalars.map(\.bitPattern) }
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for k in 0..<10 {
                let i = (t + k) % 4
                let bits = try? plan.run(["x": xs[i]])["y"]!.scalars.map(\.bitPattern)
                if bits != serial[i] { failures.add() }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }

    func testContextInUseIsRefused() throws {
        let plan = try makePlan()
        let context = plan.makeContext()
        XCTAssertTrue(context.claim())
        XCTAssertThrowsError(try plan.run(["x": try inputs(1)[0]], context: context)) { error in
            XCTAssertTrue("\(error)".contains("already running"), "\(error)")
        }
        context.release()
        XCTAssertNoThrow(try plan.run(["x": try inputs(1)[0]], context: context))
    }

    /// Eight threads hammer one shared context: every run either gives the serial bits or is
    /// refused with the in-use error; never a wrong result.
    func testSharedContextAcrossThreadsIsExactOrRefused() throws {
        let plan = try makePlan()
        let x = try inputs(1)[0]
        let expected = try plan.run(["x": x])["y"]!.scalars.map(\.bitPattern)
        let context = plan.makeContext()
        let wrong = LockedCounter(), refused = LockedCounter(), ok = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<20 {
                do {
                    let bits = try plan.run(["x": x], context: context)["y"]!.scalars.map(\.bitPattern)
                    if bits == expected { ok.add() } else { wrong.add() }
                } catch {
                    if "\(error)".contains("already running") { refused.add() } else { wrong.add() }
                }
            }
        }
        XCTAssertEqual(wrong.value, 0)
        XCTAssertEqual(ok.value + refused.value, 160)
        XCTAssertGreaterThan(ok.value, 0)
    }

    func testContextOfASmallerPlanIsRefused() throws {
        let plan = try makePlan()
        let g = Graph()
        g.output("y", try g.scale(g.input("x", shape: [2]), by: 2))
        let small = try g.compile().makeContext()
        XCTAssertLessThan(small.arenaBytes, plan.arenaBytes)
        XCTAssertThrowsError(try plan.run(["x": try inputs(1)[0]], context: small)) { error in
            XCTAssertTrue("\(error)".contains("arena"), "\(error)")
        }
    }
}

/// A counter several threads may bump.
final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
