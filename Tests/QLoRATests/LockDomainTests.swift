import Foundation
import XCTest
@testable import QLoRA

/// The locking rule (docs/architecture.md, "Locking"): buffers of one owner (a model, a layer, a
/// store's gradients, an optimizer, a KV cache) share one lock, and a run takes each domain's lock
/// once, in one global order. A plan over many parameter buffers takes a bounded number of locks
/// (ThreadSanitizer's deadlock detector tracks at most 64 per thread); a run really holds them
/// (it waits for a writer, not for a reader); runs and optimizer steps never see torn values; plans
/// sharing state serialise and cannot deadlock whatever order they recorded their states in.
final class LockDomainTests: XCTestCase {
    /// `count` layers of one lock domain (as a model builds them), each with a bias and LoRA: 3·count parameters.
    func chain(_ count: Int, width: Int = 64, rank: Int = 4, lock: ReadWriteLock) throws -> [QuantizedLinear] {
        var rng = SeededRandom(seed: 21)
        var config = QLoraConfig()
        config.rank = rank
        return try (0..<count).map { i in
            let layer = try QuantizedLinear(weight: Tensor(shape: [width, width], scalars: rng.floats(width * width, scale: 0.15)),
                                            bias: Tensor(shape: [width], scalars: rng.floats(width, scale: 0.05)),
                                            config: config, name: "layers.\(i)", seed: UInt64(i), parameterLock: lock)
            try layer.setLoraWeights(a: layer.loraWeights.a, b: Tensor(shape: [width, rank], scalars: rng.floats(width * rank, scale: 0.05)))
            return layer
        }
    }

    func forwardPlan(_ layers: [QuantizedLinear], rows: Int = 4) throws -> ExecutablePlan {
        let g = Graph()
        var h = g.input("x", shape: [rows, layers[0].inFeatures])
        for layer in layers { h = try layer(h) }
        g.output("y", h)
        return try g.compile(CompileOptions(threads: 2))
    }

    func input(rows: Int = 4, width: Int = 64) throws -> Tensor {
        var rng = SeededRandom(seed: 5)
        return try Tensor(shape: [rows, width], scalars: rng.floats(rows * width))
    }

    /// 120 parameter buffers of one model: the run holds one lock, and training (gradients, an
    /// in-graph AdamW) adds one lock per further domain, not per buffer.
    func testPlanOverManyParameterBuffersTakesOneLockPerDomain() throws {
        let lock = ReadWriteLock()
        let layers = try chain(40, lock: lock)
        let plan = try forwardPlan(layers)
        XCTAssertEqual(plan.memory.parameters.count, 120)
        XCTAssertEqual(plan.runLocks.count, 1)
        XCTAssertTrue(plan.runLocks.entries[0].lock === lock && !plan.runLocks.entries[0].write)
        XCTAssertNoThrow(try plan.run(["x": try input()]))

        let store = try ParameterStore(gathering: layers.flatMap(\.trainableParameters))
        let optimizer = try Optimizer(.adamW(learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0), parameters: store)
        let g = Graph()
        var h = g.input("x", shape: [4, 64])
        for layer in layers { h = try layer(h) }
        let loss = try g.mseLoss(h, target: g.input("t", shape: [4, 64]))
        g.output("loss", loss)
        try g.backward(from: loss, optimizer: optimizer)
        let training = try g.compile(CompileOptions(threads: 2))
        XCTAssertGreaterThan(training.memory.parameters.count + training.memory.states.count, 64)
        // The model's parameters (written: the in-graph optimizer updates them), the store's
        // gradients, the optimizer's moments.
        XCTAssertEqual(training.runLocks.count, 3)
        XCTAssertEqual(training.runLocks.entries.filter(\.write).count, 3)
        XCTAssertTrue(training.runLocks.entries.contains { $0.lock === lock })
        let entries = training.runLocks.entries.map { ObjectIdentifier($0.lock) }
        XCTAssertEqual(entries, entries.sorted(), "taken in the global order")
        XCTAssertNoThrow(try training.run(["x": try input(), "t": try input()]))
    }

    /// A run waits while a writer holds its parameters' domain, and does not wait for a reader.
    func testRunTakesTheDomainLockForReading() throws {
        let lock = ReadWriteLock()
        let plan = try forwardPlan(try chain(3, lock: lock))
        let x = try input()
        let finished = DispatchSemaphore(value: 0)

        lock.lockRead()   // another reader: the run goes ahead
        DispatchQueue.global().async { _ = try? plan.run(["x": x]); finished.signal() }
        XCTAssertEqual(finished.wait(timeout: .now() + 30), .success, "a run must not wait for another reader")
        lock.unlock()

        lock.lockWrite()   // a writer (an optimizer step, an assignment): the run waits
        DispatchQueue.global().async { _ = try? plan.run(["x": x]); finished.signal() }
        XCTAssertEqual(finished.wait(timeout: .now() + 0.3), .timedOut, "the run went ahead while the domain was being written")
        lock.unlock()
        XCTAssertEqual(finished.wait(timeout: .now() + 30), .success)
    }

    /// Optimizer steps (which write every parameter of the model's domain) while other threads
    /// run the forward: every result is the output for the parameters after some whole number of
    /// steps, never a mix of two.
    func testRunsDuringOptimizerStepsSeeWholeSteps() throws {
        let layers = try chain(6, width: 128, rank: 32, lock: ReadWriteLock())
        let plan = try forwardPlan(layers, rows: 2)
        let store = try ParameterStore(gathering: layers.flatMap(\.trainableParameters))
        let optimizer = try Optimizer(.sgd(learningRate: 0.01, momentum: 0), parameters: store)
        for i in store.parameters.indices {
            var rng = SeededRandom(seed: UInt64(40 + i))
            try store.setGradient(i, Tensor(shape: store.parameters[i].shape, scalars: rng.floats(store.parameters[i].count)))
        }
        let x = try input(rows: 2, width: 128)
        let initial = store.flatValues
        let steps = 300
        // The outputs after 0...steps steps, one at a time.
        var outputs: Set<[UInt32]> = []
        for k in 0...steps {
            outputs.insert(try plan.run(["x": x])["y"]!.scalars.map(\.bitPattern))
            if k < steps { optimizer.step(threads: 1) }
        }
        let expected = outputs
        XCTAssertEqual(expected.count, steps + 1, "each step changes the output")
        try store.restoreFlatValues(initial, source: "test")

        // Two threads run the forward (until this one has taken every step, at most 200 times
        // each: glibc's rwlock prefers readers, so a writer may wait for them all).
        let wrong = LockedCounter(), runs = LockedCounter(), stepping = LockedCounter()
        let group = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: group) {
                let context = plan.makeContext()
                for _ in 0..<200 where stepping.value == 0 {
                    let bits = try? plan.run(["x": x], context: context)["y"]!.scalars.map(\.bitPattern)
                    runs.add()
                    if bits.map({ !expected.contains($0) }) ?? true { wrong.add() }
                }
            }
        }
        while runs.value == 0 { usleep(100) }
        for _ in 0..<steps { optimizer.step(threads: 1) }
        stepping.add()
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertGreaterThan(runs.value, 0)
        XCTAssertEqual(wrong.value, 0, "\(wrong.value) of \(runs.value) runs saw parameters in the middle of an optimizer step")
        // The last runs saw the last step.
        XCTAssertTrue(expected.contains(try plan.run(["x": x])["y"]!.scalars.map(\.bitPattern)))
    }

    /// `accumulate` into one state from two plans on four threads: every run's addition lands
    /// (the values are small integers, so the sum is exact in any order).
    func testTwoPlansAccumulatingIntoOneStateSerialise() throws {
        let state = try StateStorage(name: "sum", shape: [1 << 16])
        func plan(_ scale: Float) throws -> ExecutablePlan {
            let g = Graph()
            let x = g.input("x", shape: [1 << 16])
            g.output("sum", try g.accumulate(g.state(state), try g.scale(x, by: scale)))
            return try g.compile(CompileOptions(threads: 1))
        }
        let plans = [try plan(1), try plan(2)]
        let ones = try Tensor(shape: [1 << 16], scalars: [Float](repeating: 1, count: 1 << 16))
        let runsPerThread = 100
        let group = DispatchGroup()
        for t in 0..<4 {
            DispatchQueue.global().async(group: group) {
                let p = plans[t % 2], context = p.makeContext()
                for _ in 0..<runsPerThread { _ = try? p.run(["x": ones], context: context) }
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        // Threads 0, 2 add 1 and threads 1, 3 add 2, runsPerThread times each.
        let total = Float(2 * runsPerThread * 1 + 2 * runsPerThread * 2)
        let values = state.tensor.scalars
        XCTAssertEqual(values.filter { $0 != total }.count, 0, "lost updates: e.g. \(values.first { $0 != total } ?? total) instead of \(total)")
    }

    /// Two plans updating the same two states (of two domains), recorded in opposite orders:
    /// taken in the global order, their locks never deadlock.
    func testPlansSharingStatesInOppositeOrdersDoNotDeadlock() throws {
        let a = try StateStorage(name: "a", shape: [1024]), b = try StateStorage(name: "b", shape: [1024])
        func plan(_ first: StateStorage, _ second: StateStorage) throws -> ExecutablePlan {
            let g = Graph()
            let x = g.input("x", shape: [1024])
            g.output("first", try g.accumulate(g.state(first), x))
            g.output("second", try g.accumulate(g.state(second), x))
            return try g.compile(CompileOptions(threads: 1))
        }
        let plans = [try plan(a, b), try plan(b, a)]
        XCTAssertEqual(plans[0].runLocks.entries.map { ObjectIdentifier($0.lock) }, plans[1].runLocks.entries.map { ObjectIdentifier($0.lock) })
        let ones = try Tensor(shape: [1024], scalars: [Float](repeating: 1, count: 1024))
        let done = DispatchGroup()
        for t in 0..<4 {
            DispatchQueue.global().async(group: done) {
                let p = plans[t % 2], context = p.makeContext()
                for _ in 0..<200 { _ = try? p.run(["x": ones], context: context) }
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "deadlock")
        XCTAssertEqual(a.tensor.scalars[0], 800)
        XCTAssertEqual(b.tensor.scalars[1023], 800)
    }

    /// A Llama model is one domain: its training plan takes the model's, the gradients' and (with
    /// an in-graph optimizer) the optimizer's lock; its decode plan the model's and the KV cache's.
    func testLlamaPlansTakeOneLockPerDomain() throws {
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let store = try ParameterStore(gathering: model.trainableParameters)
        let g = Graph()
        let ids = g.input("input_ids", shape: [1, 5], element: .int32)
        let loss = try g.causalLMLoss(try model.record(inputIds: ids).logits, labels: ids, label: "loss")
        g.output("loss", loss)
        try g.backward(from: loss, parameters: store)
        let training = try g.compile()
        XCTAssertGreaterThan(training.memory.parameters.count, 8)
        XCTAssertEqual(training.runLocks.count, 2)
        XCTAssertTrue(training.runLocks.entries.filter(\.write).map(\.lock).first === store.gradientLock)

        let generator = try LlamaGenerator(model: model, capacity: 8)
        _ = try generator.feed([1, 2, 3])
        let cache = generator.cache.keys[0].locks.entries[0].lock
        let decode = try generator.plan(seq: 1)
        XCTAssertGreaterThan(decode.memory.states.count, 1)
        XCTAssertEqual(decode.runLocks.count, 2)
        XCTAssertTrue(decode.runLocks.entries.contains { $0.lock === cache && $0.write })
        XCTAssertTrue(decode.runLocks.entries.contains { $0.lock === model.finalNorm.lock && !$0.write })
        XCTAssertTrue((generator.cache.keys + generator.cache.values).allSatisfy { $0.locks.count == 1 && $0.locks.entries[0].lock === cache })
        XCTAssertTrue(model.trainableParameters.allSatisfy { $0.lock === model.finalNorm.lock })
    }
}
