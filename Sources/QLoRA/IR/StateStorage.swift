import Foundation

/// A persistent f32 buffer that lives across runs of the plans using it and that their steps
/// update in place: gradients accumulated over micro-batches, optimizer moments, a KV cache.
/// Starts at zero. Runs of plans using it are serialised on it (a writer lock on its domain), so
/// a step sees the value the previous run left.
public final class StateStorage: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    let count: Int
    let region: FloatRegion
    /// The locks of the domains the buffer lies in: its owner's (a KV cache, a store's gradients,
    /// an optimizer's moments) or its own; a store's whole parameter buffer lies in the domains of
    /// every parameter it gathered.
    let locks: LockSet
    private let readLocks: LockSet

    public convenience init(name: String, shape: [Int]) throws {
        try self.init(name: name, shape: shape, lock: ReadWriteLock())
    }

    /// A state of its own in the lock domain of `lock` (the cache or optimizer that owns it).
    init(name: String, shape: [Int], lock: ReadWriteLock) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw QLoraError.invalidArgument("state '\(name)' has shape \(shape); every dimension must be > 0")
        }
        self.name = name
        self.shape = shape
        count = shape.reduce(1, *)
        region = FloatRegion(count: count)
        locks = LockSet(writing: [lock])
        readLocks = locks.forReading
    }

    /// A state that is a slice of a flat buffer (the gradients of a `ParameterStore`), guarded by `locks`.
    init(name: String, shape: [Int], region: FloatRegion, locks: [ReadWriteLock]) {
        self.name = name
        self.locks = LockSet(writing: locks)
        readLocks = self.locks.forReading
        self.shape = shape
        count = shape.reduce(1, *)
        self.region = region
    }

    /// A copy of the current values.
    public var tensor: Tensor { read { Tensor(uncheckedShape: shape, scalars: Array(UnsafeBufferPointer(start: region.floats, count: count))) } }

    /// Sets every value back to zero (a new accumulation, an empty cache).
    public func reset() { write { region.floats.update(repeating: 0, count: count) } }

    var memoryBytes: Int { count * 4 }

    /// `body` holding the state's locks for reading.
    func read<R>(_ body: () throws -> R) rethrows -> R { try readLocks.locked(body) }
    /// `body` holding the state's locks for writing.
    func write<R>(_ body: () throws -> R) rethrows -> R { try locks.locked(body) }
}
