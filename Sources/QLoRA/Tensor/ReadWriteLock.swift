import Foundation

/// A readers-writer lock guarding one lock domain: every buffer a model, a layer, a parameter
/// store's gradients, an optimizer's state or a KV cache owns shares its owner's lock, so a plan
/// run takes one lock per domain it touches rather than one per buffer (docs/architecture.md,
/// "Locking"). Many runs may read a domain at once; a writer (an optimizer step, an assignment,
/// a run updating a state in place) excludes everyone else.
final class ReadWriteLock: @unchecked Sendable {
    /// Heap storage: a pthread lock must not move while in use.
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    init() {
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deinitialize(count: 1)
        lock.deallocate()
    }

    func read<R>(_ body: () throws -> R) rethrows -> R {
        lockRead(); defer { unlock() }
        return try body()
    }

    func write<R>(_ body: () throws -> R) rethrows -> R {
        lockWrite(); defer { unlock() }
        return try body()
    }

    func lockRead() { pthread_rwlock_rdlock(lock) }
    func lockWrite() { pthread_rwlock_wrlock(lock) }
    func unlock() { pthread_rwlock_unlock(lock) }
}

/// Locks taken together: each distinct lock once (for writing when any member asks to write),
/// in one global order (the locks' `ObjectIdentifier`s), so two holders of overlapping sets can
/// never deadlock. Built once (a plan, a store, an optimizer) and taken on every use without
/// allocating.
struct LockSet: Sendable {
    struct Entry: Sendable {
        let lock: ReadWriteLock
        let write: Bool
    }

    /// Distinct locks in the global order.
    let entries: [Entry]

    init(reading: [ReadWriteLock] = [], writing: [ReadWriteLock] = []) {
        var byLock: [ObjectIdentifier: Entry] = [:]
        for l in reading { byLock[ObjectIdentifier(l)] = Entry(lock: l, write: false) }
        for l in writing { byLock[ObjectIdentifier(l)] = Entry(lock: l, write: true) }
        entries = byLock.sorted { $0.key < $1.key }.map(\.value)
    }

    /// How many locks a holder takes.
    var count: Int { entries.count }

    /// The same locks, every one for reading.
    var forReading: LockSet { LockSet(reading: entries.map(\.lock)) }

    func lock() {
        for e in entries { if e.write { e.lock.lockWrite() } else { e.lock.lockRead() } }
    }

    func unlock() {
        for e in entries.reversed() { e.lock.unlock() }
    }

    func locked<R>(_ body: () throws -> R) rethrows -> R {
        lock(); defer { unlock() }
        return try body()
    }

    /// This set and `other` as one set (taken in the one global order).
    func union(_ other: LockSet) -> LockSet {
        let all = entries + other.entries
        return LockSet(reading: all.filter { !$0.write }.map(\.lock), writing: all.filter(\.write).map(\.lock))
    }
}
