import Foundation
import XCTest
@testable import QLoRA

/// `GradientBuckets` and `PlanStepObserver` on the tiny Llama training plan (../shared/reference
/// interop/model_bnb4bit, LoRA on every projection): every parameter in exactly one bucket, the
/// buckets finished in backward order (last layer first), and the observer signalling each bucket
/// once per run, right after the step that writes its last gradient — checked against the final
/// gradient buffer of the same run, so a signal that came too early (a slice not yet written)
/// or too late for the overlap to help fails.
final class GradientBucketsTests: XCTestCase {
    func makeStep(threads: Int = 1) throws -> (CausalLMTrainingStep, CausalLMBatches) {
        let model = try LlamaModel.load(Reference.url("interop/model_bnb4bit"), adapter: LoraAdapter(directory: Reference.url("interop/adapter")))
        let step = try CausalLMTrainingStep(model: model, options: CompileOptions(threads: threads))
        let batches = try CausalLMBatches(inputIds: LlamaReferenceTests.inputIds(), labels: nil, batchSize: 1, source: "input_ids.i64")
        return (step, batches)
    }

    func testEveryParameterInExactlyOneBucketFinishedInBackwardOrder() throws {
        let (step, batches) = try makeStep()
        let store = step.parameters
        let plan = try XCTUnwrap(try step.plan(for: batches.batches[0]))
        let layerCount = step.model.config.layers
        for target in [1, 4096, 64 << 10, 1 << 30] {
            let layout = try GradientBuckets(plan: plan, store: store, targetBytes: target)
            // Every slot once; the ranges tile 0..<count without overlap; each slot's slice inside its bucket.
            XCTAssertEqual(layout.buckets.flatMap(\.slots).sorted(), Array(store.parameters.indices), "target \(target)")
            let ranges = layout.buckets.flatMap(\.ranges).sorted { $0.lowerBound < $1.lowerBound }
            XCTAssertEqual(ranges.first?.lowerBound, 0)
            XCTAssertEqual(ranges.last?.upperBound, store.count)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound, "target \(target): a gap or an overlap") }
            for bucket in layout.buckets {
                for slot in bucket.slots {
                    let r = GradientBuckets.range(slot, store)
                    XCTAssert(bucket.ranges.contains { $0.lowerBound <= r.lowerBound && r.upperBound <= $0.upperBound })
                }
                XCTAssert(bucket.floats * 4 >= target || bucket == layout.buckets.last!, "only the last bucket is under the target")
            }
            // Backward order: each bucket finishes at a later step than the one before it.
            let steps = try layout.completionSteps(in: plan, store: store)
            XCTAssertEqual(steps, steps.sorted(), "target \(target)")
            XCTAssertEqual(Set(steps).count, steps.count, "target \(target): two buckets finish at one step")
            XCTAssertLessThan(steps.last!, plan.steps.count)
        }
        // One parameter per bucket: the first buckets hold the last layer, the last ones layer 0.
        let single = try GradientBuckets(plan: plan, store: store, targetBytes: 1)
        XCTAssertEqual(single.buckets.count, store.parameters.count)
        let layerOf = { (slot: Int) -> Int? in
            let parts = store.parameters[slot].name.split(separator: ".")
            return parts.firstIndex(of: "layers").flatMap { Int(parts[$0 + 1]) }
        }
        let order = single.buckets.compactMap { layerOf($0.slots[0]) }
        XCTAssertEqual(order.first, layerCount - 1, "\(order)")
        XCTAssertEqual(order.last, 0, "\(order)")
        XCTAssertEqual(order, order.sorted(by: >), "layers finish last first")
        // The first bucket is ready while most of the backward is still to run.
        let steps = try single.completionSteps(in: plan, store: store)
        let backwardStart = plan.steps.firstIndex { $0.label.hasPrefix("grad") }!
        XCTAssertLessThan(steps[0] - backwardStart, (plan.steps.count - backwardStart) / 2,
                          "the last layer's gradients are written in the first half of the backward")
    }

    func testTheObserverSignalsEachBucketOnceRightAfterItsGradientsAreFinal() throws {
        for threads in [1, 2] {
            let (step, batches) = try makeStep(threads: threads)
            let store = step.parameters
            let plan = try XCTUnwrap(try step.plan(for: batches.batches[0]))
            let layout = try GradientBuckets(plan: plan, store: store, targetBytes: 3000)
            XCTAssertGreaterThan(layout.buckets.count, 3)
            let steps = try layout.completionSteps(in: plan, store: store)
            for batch in batches.batches {
                store.zeroGradients()
                var seen: [(bucket: Int, values: [Float])] = []
                let flat = store.gradientValues.raw.assumingMemoryBound(to: Float.self)
                let observer = try PlanStepObserver(plan: plan, signals: steps.enumerated().map { (step: $0.element, tag: $0.offset) }) { b in
                    seen.append((b, layout.buckets[b].ranges.flatMap { Array(UnsafeBufferPointer(start: flat + $0.lowerBound, count: $0.count)) }))
                }
                _ = try observer.observing { try step.run(batch) }
                XCTAssertEqual(seen.map(\.bucket), Array(layout.buckets.indices), "each bucket once per run, in order")
                let final = store.flatGradients
                for (b, values) in seen {
                    let expected = layout.buckets[b].ranges.flatMap { Array(final[$0]) }
                    XCTAssertEqual(values, expected, "bucket \(b): the signal came before its gradients were final")
                    XCTAssert(values.contains { $0 != 0 }, "bucket \(b) holds gradients")
                }
                // Signalled right after the finishing step: the step before it had not yet written the bucket.
                let earlier = try PlanStepObserver(plan: plan, signals: steps.enumerated().map { (step: $0.element - 1, tag: $0.offset) }) { b in
                    let values = layout.buckets[b].ranges.flatMap { Array(UnsafeBufferPointer(start: flat + $0.lowerBound, count: $0.count)) }
                    XCTAssertNotEqual(values, layout.buckets[b].ranges.flatMap { Array(final[$0]) }, "bucket \(b) was complete a step earlier")
                }
                store.zeroGradients()
                _ = try earlier.observing { try step.run(batch) }
            }
        }
    }

    func testTheObserverIgnoresOtherPlansAndRunsOutsideItsScope() throws {
        let (step, batches) = try makeStep()
        let a = try XCTUnwrap(try step.plan(for: batches.batches[0]))
        var calls = 0
        let observer = try PlanStepObserver(plan: a, signals: [(step: 0, tag: 7)]) { XCTAssertEqual($0, 7); calls += 1 }
        _ = try step.run(batches.batches[0])
        XCTAssertEqual(calls, 0, "outside observing")
        let other = Graph()
        other.output("y", try other.relu(other.input("x", shape: [2])))
        let plan = try other.compile()
        _ = try observer.observing { try plan.run(["x": Tensor(shape: [2], scalars: [1, 2])]) }
        XCTAssertEqual(calls, 0, "another plan")
        _ = try observer.observing { try step.run(batches.batches[0]) }
        XCTAssertEqual(calls, 1)
        XCTAssertThrowsError(try PlanStepObserver(plan: a, signals: [(step: a.steps.count, tag: 0)]) { _ in })
    }
}
