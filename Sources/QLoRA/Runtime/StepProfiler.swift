import Foundation

/// Wall-clock time per plan step, summed over every run made inside `recording { }` on this
/// thread (the executor looks the profiler up once per run through a task-local, so the immutable
/// plan is untouched and runs outside `recording` pay nothing). Steps are grouped by kernel and
/// by label with layer numbers folded (`layers.12.mlp.down_proj` → `layers.#.mlp.down_proj`), and
/// the report gives each group's share of the time and its GFLOP/s from the step's own flop count.
/// Timing a step adds two clock reads to it; the bits of every result are unchanged.
public final class StepProfiler: @unchecked Sendable {
    @TaskLocal static var current: StepProfiler?

    public struct Entry: Sendable {
        public let kernel: String
        public let label: String
        public internal(set) var calls = 0
        public internal(set) var nanoseconds: UInt64 = 0
        public internal(set) var flops = 0
        public internal(set) var bytesMoved = 0
    }

    private let lock = NSLock()
    /// Per plan profiled (held, so its identifier is not reused while recorded): per step, the
    /// nanoseconds summed over the plan's runs, and how many runs that is.
    private var perPlan: [ObjectIdentifier: (plan: ExecutablePlan, nanoseconds: [UInt64], runs: Int)] = [:]
    private var runs = 0

    public init() {}

    /// Runs `body`; every plan run inside it (on this thread) adds its steps' times.
    public func recording<R>(_ body: () throws -> R) rethrows -> R {
        try StepProfiler.$current.withValue(self, operation: body)
    }

    /// One run's step times (`nanoseconds[i]` for `plan.steps[i]`), added once the run is over so
    /// that nothing but two clock reads happens between steps.
    func record(_ plan: ExecutablePlan, nanoseconds: [UInt64]) {
        lock.lock(); defer { lock.unlock() }
        let key = ObjectIdentifier(plan)
        var sums = perPlan[key] ?? (plan, [UInt64](repeating: 0, count: plan.steps.count), 0)
        for i in sums.nanoseconds.indices { sums.nanoseconds[i] += nanoseconds[i] }
        sums.runs += 1
        perPlan[key] = sums
        runs += 1
    }

    /// The (kernel, folded label) groups, summed over every recorded run.
    private var byKey: [String: Entry] {
        lock.lock(); defer { lock.unlock() }
        var groups: [String: Entry] = [:]
        for (plan, nanoseconds, runs) in perPlan.values {
            for (step, ns) in zip(plan.steps, nanoseconds) {
                let label = Self.foldingNumbers(step.label)
                let key = step.kernelName + "\u{1}" + label
                var entry = groups[key] ?? Entry(kernel: step.kernelName, label: label)
                entry.calls += runs
                entry.nanoseconds += ns
                entry.flops += runs * step.flops
                entry.bytesMoved += runs * step.bytesMoved
                groups[key] = entry
            }
        }
        return groups
    }

    /// Every group, the most expensive first.
    public var entries: [Entry] {
        byKey.values.sorted { ($0.nanoseconds, $1.label) > ($1.nanoseconds, $0.label) }
    }

    /// The same entries summed per kernel, the most expensive first.
    public var byKernel: [Entry] {
        var sums: [String: Entry] = [:]
        for e in entries {
            var s = sums[e.kernel] ?? Entry(kernel: e.kernel, label: "")
            s.calls += e.calls
            s.nanoseconds += e.nanoseconds
            s.flops += e.flops
            s.bytesMoved += e.bytesMoved
            sums[e.kernel] = s
        }
        return sums.values.sorted { ($0.nanoseconds, $1.kernel) > ($1.nanoseconds, $0.kernel) }
    }

    /// A text table: per kernel, then the `top` most expensive (kernel, label) groups.
    public func report(top: Int = 25) -> String {
        let all = entries
        let total = all.reduce(UInt64(0)) { $0 + $1.nanoseconds }
        let runCount = max(1, { lock.lock(); defer { lock.unlock() }; return runs }())
        func row(_ e: Entry, _ name: String) -> String {
            let ms = Double(e.nanoseconds) / 1e6 / Double(runCount)
            let share = total == 0 ? 0 : 100 * Double(e.nanoseconds) / Double(total)
            let gflops = e.nanoseconds == 0 ? 0 : Double(e.flops) / Double(e.nanoseconds)
            let gbs = e.nanoseconds == 0 ? 0 : Double(e.bytesMoved) / Double(e.nanoseconds)
            return String(format: "%9.2f ms %5.1f%% %6d %8.1f %7.2f  %@", ms, share, e.calls / runCount, gflops, gbs, name as NSString)
        }
        var lines = [String(format: "step profile: %.1f ms per run over %d run(s)", Double(total) / 1e6 / Double(runCount), runCount),
                     "  ms/run  share  steps  GFLOP/s    GB/s  kernel"]
        lines += byKernel.map { row($0, $0.kernel) }
        lines += ["", "  ms/run  share  steps  GFLOP/s    GB/s  kernel  label (layer numbers folded)"]
        lines += all.prefix(top).map { row($0, $0.kernel + "  " + $0.label) }
        return lines.joined(separator: "\n")
    }

    /// `layers.12.self_attn` → `layers.#.self_attn`: a run of digits between dots (or at the end) is a layer index.
    static func foldingNumbers(_ label: String) -> String {
        label.split(separator: ".", omittingEmptySubsequences: false)
            .map { part in !part.isEmpty && part.allSatisfy(\.isNumber) ? "#" : String(part) }
            .joined(separator: ".")
    }
}
