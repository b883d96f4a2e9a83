import Foundation

/// A persistent f32 buffer that lives across runs of the plans using it and that their steps
/// update in place: gradients accumulated over micro-batches, optimizer moments, a KV cache.
/// Starts at zero. Runs of plans using it are serialised on it (a writer lock), so a step sees
/// the value the previous run left.
public final class StateStorage: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    let count: Int
    let region: FloatRegion
    let lock = ReadWriteLock()

    public init(name: String, shape: [Int]) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else {
            throw QLoraError.invalidArgument("state '\(name)' has shape \(shape); every dimension must be > 0")
        }
        self.name = name
        self.shape = shape
        count = shape.reduce(1, *)
        region = FloatRegion(count: count)
    }

    /// A state that is a slice of a flat buffer (the gradients of a `ParameterStore`).
    init(name: String, shape: [Int], region: FloatRegion) {
        self.name = name
        self.shape = shape
        count = shape.reduce(1, *)
        self.region = region
    }

    /// A copy of the current values.
    public var tensor: Tensor { lock.read { Tensor(uncheckedShape: shape, scalars: Array(UnsafeBufferPointer(start: region.floats, count: count))) } }

    /// Sets every value back to zero (a new accumulation, an empty cache).
    public func reset() { lock.write { region.floats.update(repeating: 0, count: count) } }

    var memoryBytes: Int { count * 4 }
}
