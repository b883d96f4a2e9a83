/// A bounded cache of compiled plans keyed by what they were compiled for (a shape, a mode):
/// when full, the least recently used plan goes. Not thread-safe; its owner locks.
struct PlanCache<Key: Hashable> {
    /// How many plans it keeps (at least 1).
    private(set) var capacity: Int
    private var plans: [Key: ExecutablePlan] = [:]
    /// Keys from least to most recently used.
    private var recency: [Key] = []

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { plans.count }
    var keys: [Key] { recency }

    /// The cached plan for `key`, else `make()`'s, which is kept (evicting the least recently used).
    mutating func plan(for key: Key, make: () throws -> ExecutablePlan) rethrows -> ExecutablePlan {
        if let plan = plans[key] {
            recency.removeAll { $0 == key }
            recency.append(key)
            return plan
        }
        let plan = try make()
        plans[key] = plan
        recency.append(key)
        evict()
        return plan
    }

    mutating func setCapacity(_ n: Int) {
        capacity = max(1, n)
        evict()
    }

    mutating func removeAll(where drop: (Key) -> Bool) {
        for key in recency where drop(key) { plans[key] = nil }
        recency.removeAll(where: drop)
    }

    private mutating func evict() {
        while plans.count > capacity { plans[recency.removeFirst()] = nil }
    }
}
