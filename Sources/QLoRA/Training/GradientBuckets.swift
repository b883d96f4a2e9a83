/// The trainable parameters' gradients grouped into buckets in the order the backward finishes
/// them, for a data-parallel reduction that overlaps the backward (as torch DDP's buckets).
///
/// The autodiff pass writes each parameter's gradient slice with one `assign` step, emitted as
/// soon as the gradient is complete (last layer first). `GradientBuckets` reads those steps from
/// a plan: parameters sorted by the step that finishes them, cut into buckets of about
/// `targetBytes`. A bucket is a list of ranges of the store's flat gradient buffer (its
/// parameters' slices with their alignment gaps; neighbouring slices merged), so the buckets
/// cover the whole flat buffer exactly once. The layout depends only on the order the steps
/// finish the parameters, which is the same in every plan of one model (any batch shape); each
/// plan gets its own step index per bucket (`completionSteps`).
public struct GradientBuckets: Sendable, Equatable {
    public struct Bucket: Sendable, Equatable {
        /// Parameter slots (indices into `ParameterStore.parameters`), in the order they finish.
        public var slots: [Int]
        /// Ranges of the flat gradient buffer, in floats, ascending and disjoint.
        public var ranges: [Range<Int>]
        public var floats: Int { ranges.reduce(0) { $0 + $1.count } }
    }

    public let buckets: [Bucket]
    /// The flat buffer's length (`ParameterStore.count`).
    public let count: Int

    /// Buckets of `store`'s gradients in the order `plan`'s steps finish them.
    public init(plan: ExecutablePlan, store: ParameterStore, targetBytes: Int) throws {
        guard targetBytes > 0 else { throw QLoraError.invalidArgument("the gradient bucket size must be > 0 bytes, got \(targetBytes)") }
        let finish = try Self.finishingSteps(plan: plan, store: store)
        let order = store.parameters.indices.sorted { (finish[$0], $0) < (finish[$1], $1) }
        var buckets: [Bucket] = [], slots: [Int] = [], bytes = 0
        for slot in order {
            slots.append(slot)
            bytes += Self.range(slot, store).count * 4
            if bytes >= targetBytes {
                buckets.append(Self.bucket(slots, store))
                slots = []
                bytes = 0
            }
        }
        if !slots.isEmpty { buckets.append(Self.bucket(slots, store)) }
        self.buckets = buckets
        count = store.count
    }

    /// Per bucket, the index of the step of `plan` after which all its gradients are written.
    public func completionSteps(in plan: ExecutablePlan, store: ParameterStore) throws -> [Int] {
        guard store.count == count else {
            throw QLoraError.invalidArgument("gradient buckets made for \(count) floats, the parameter store holds \(store.count)")
        }
        let finish = try Self.finishingSteps(plan: plan, store: store)
        return buckets.map { $0.slots.map { finish[$0] }.max()! }
    }

    /// A number every rank with the same layout computes alike (ranks compare it before using it).
    public var fingerprint: Double {
        var h: UInt64 = 1469598103934665603
        for b in buckets {
            for r in b.ranges { h = (h ^ UInt64(r.lowerBound)) &* 1099511628211; h = (h ^ UInt64(r.upperBound)) &* 1099511628211 }
            h = (h ^ 0xB0C4) &* 1099511628211
        }
        return Double(h >> 12)  // 52 bits: exact in a Double
    }

    /// Per parameter slot, the index of the plan step that writes its gradient slice (the last one
    /// if several do). Throws when the plan does not write some parameter's gradient.
    static func finishingSteps(plan: ExecutablePlan, store: ParameterStore) throws -> [Int] {
        var slotOfState: [ObjectIdentifier: Int] = [:]
        for (slot, g) in store.gradients.enumerated() { slotOfState[ObjectIdentifier(g)] = slot }
        var finish = [Int](repeating: -1, count: store.parameters.count)
        for (index, step) in plan.steps.enumerated() {
            guard case let .state(i) = step.output, let slot = slotOfState[ObjectIdentifier(plan.memory.states[i])] else { continue }
            finish[slot] = index
        }
        if let missing = finish.firstIndex(of: -1) {
            throw QLoraError.invalidArgument("the training plan does not write the gradient of '\(store.parameters[missing].name)' (was it compiled with backward over this parameter store?)")
        }
        return finish
    }

    /// Slot `slot`'s part of the flat buffer: its values and the alignment gap after them.
    static func range(_ slot: Int, _ store: ParameterStore) -> Range<Int> {
        store.offsets[slot]..<(slot + 1 < store.offsets.count ? store.offsets[slot + 1] : store.count)
    }

    private static func bucket(_ slots: [Int], _ store: ParameterStore) -> Bucket {
        var ranges: [Range<Int>] = []
        for r in slots.map({ range($0, store) }).sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = ranges.last, last.upperBound == r.lowerBound {
                ranges[ranges.count - 1] = last.lowerBound..<r.upperBound
            } else {
                ranges.append(r)
            }
        }
        return Bucket(slots: slots, ranges: ranges)
    }
}
