import Foundation

/// Tells a caller when chosen steps of one plan have run: inside `observing { }` on this thread,
/// every run of `plan` calls `signal(tag)` right after step `steps[i]` for each (step, tag) given,
/// in step order, on the thread that runs the plan. The executor looks the observer up once per run
/// through a task-local (as `StepProfiler`), so the plan stays immutable and runs outside
/// `observing`, or of another plan, pay one nil check per step.
///
/// What it is for: `GradientBuckets` knows which step writes the last part of each gradient
/// bucket, and a data-parallel trainer starts reducing a bucket while the backward continues.
/// `signal` runs between two steps of the plan: it must be short and must not run a plan.
public final class PlanStepObserver: @unchecked Sendable {
    @TaskLocal static var current: PlanStepObserver?

    public let plan: ExecutablePlan
    /// Per step index, the tags to signal after it (empty for most steps).
    private let tagsAfter: [[Int]]
    private let signal: (Int) -> Void

    /// `signals`: (step index, tag) pairs; every step index must be a step of `plan`.
    public init(plan: ExecutablePlan, signals: [(step: Int, tag: Int)], signal: @escaping (Int) -> Void) throws {
        var tags = [[Int]](repeating: [], count: plan.steps.count)
        for s in signals {
            guard s.step >= 0, s.step < plan.steps.count else {
                throw QLoraError.invalidArgument("PlanStepObserver: step \(s.step) outside the plan's 0..<\(plan.steps.count)")
            }
            tags[s.step].append(s.tag)
        }
        self.plan = plan
        tagsAfter = tags
        self.signal = signal
    }

    /// Runs `body`; every run of `plan` inside it (on this thread) signals after the chosen steps.
    public func observing<R>(_ body: () throws -> R) rethrows -> R {
        try PlanStepObserver.$current.withValue(self, operation: body)
    }

    func finished(step index: Int) {
        for tag in tagsAfter[index] { signal(tag) }
    }
}
