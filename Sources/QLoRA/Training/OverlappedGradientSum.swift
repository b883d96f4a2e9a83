import CQLoRAKernels
import Foundation

/// `OrderedGradientSum` bucket by bucket on a communication thread while the last micro-batch's
/// backward still runs (docs/distributed.md, "Overlap").
///
/// The executor signals `bucketReady(b)` after the step that writes bucket b's last gradient
/// (`GradientBuckets`, `PlanStepObserver`). The thread takes the buckets in layout order (the
/// same on every rank, so the messages match): it forms the last micro-batch's contribution over
/// the bucket's ranges — rank 0 folds w·g into the sum (as `Trainer` folds a whole buffer), rank
/// r > 0 keeps w·g with its earlier products — then runs the chain over the ranges and the last
/// rank's broadcast. Every element is added in the same order as without overlap (the rank /
/// micro-batch order), so the result bits do not change; only the time they are computed does.
///
/// MPI calls are made by this thread only while it runs, and by the caller only before `start`
/// and after `finish`: a library initialised with MPI_THREAD_SERIALIZED suffices.
final class OverlappedGradientSum: @unchecked Sendable {
    private let buckets: GradientBuckets
    private let collective: any Collective
    private let sum: UnsafeMutablePointer<Float>
    private let gradients: UnsafePointer<Float>
    /// Rank r > 0: its micro-batches' products, the last one (`last`) filled here.
    private let weighted: [UnsafeMutablePointer<Float>]
    private let weight: Float
    private let firstFold: Bool

    private let condition = NSCondition()
    private var ready: [Bool]
    private var cancelled = false
    private var failure: (any Error)?
    private let done = DispatchSemaphore(value: 0)

    /// `sum`, `gradients` and `weighted` are flat buffers of `buckets.count` floats that stay
    /// valid until `finish` returns. Rank 0: `sum` gets w·g folded in (`firstFold`: sum = w·g).
    /// Rank r > 0: `weighted.last` gets w·g, then the chain adds every product in order.
    init(buckets: GradientBuckets, collective: any Collective, sum: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
         weighted: [UnsafeMutablePointer<Float>], weight: Float, firstFold: Bool) {
        self.buckets = buckets
        self.collective = collective
        self.sum = sum
        self.gradients = gradients
        self.weighted = weighted
        self.weight = weight
        self.firstFold = firstFold
        ready = [Bool](repeating: false, count: buckets.buckets.count)
    }

    /// Starts the communication thread.
    func start() {
        let thread = Thread { [self] in
            defer { done.signal() }
            do { try reduceAll() } catch {
                condition.lock(); failure = error; condition.unlock()
            }
        }
        thread.name = "qlora-gradient-reduce"
        thread.start()
    }

    /// Called on the plan's thread right after the step that completes bucket `b`.
    func bucketReady(_ b: Int) {
        condition.lock()
        ready[b] = true
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until every bucket is reduced (into `sum` on every rank); rethrows the thread's error.
    func finish() throws {
        done.wait()
        condition.lock(); defer { condition.unlock() }
        if let failure { throw failure }
    }

    /// After the plan ran: every bucket must have been signalled, or `finish` would wait forever
    /// (a training step that ran another plan than the one it announced).
    func checkEveryBucketSignalled() throws {
        condition.lock(); defer { condition.unlock() }
        if let missing = ready.firstIndex(of: false) {
            throw QLoraError.invalidArgument("the training step's plan never finished gradient bucket \(missing) of \(ready.count): it ran another plan than `plan(for:)` returned")
        }
    }

    /// The backward failed: the thread stops waiting for buckets (one blocked in a transfer stays
    /// blocked; the caller ends the job).
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    private func reduceAll() throws {
        let rank = collective.rank, root = collective.size - 1
        let products = weighted.map { UnsafePointer($0) }
        for (b, bucket) in buckets.buckets.enumerated() {
            condition.lock()
            while !ready[b] && !cancelled { condition.wait() }
            let stop = cancelled
            condition.unlock()
            if stop { return }
            // One thread: the plan's team keeps the cores; the element order is the same either way.
            for r in bucket.ranges {
                if rank == 0 {
                    cq_accumulate_scaled(sum + r.lowerBound, gradients + r.lowerBound, weight, firstFold ? 1 : 0, Int64(r.count), 1)
                } else {
                    cq_accumulate_scaled(weighted.last! + r.lowerBound, gradients + r.lowerBound, weight, 1, Int64(r.count), 1)
                }
            }
            for r in bucket.ranges {
                try OrderedGradientSum.chain(sum, weighted: rank == 0 ? [] : products, range: r, collective: collective, threads: 1)
            }
            for r in bucket.ranges {
                try collective.broadcast(UnsafeMutableBufferPointer(start: sum + r.lowerBound, count: r.count), root: root)
            }
        }
    }
}
