import Foundation
import CQLoRAKernels

/// A full-precision tensor owned by a layer (LoRA A/B, bias, norm weight) that compiled plans read
/// at run time. Plans hold a reference, so new values (a loaded adapter, an optimizer step) never
/// require recompiling. The shape is fixed; the values move only when a `ParameterStore` gathers
/// them into its flat buffer (plans resolve the address on every run, under the lock).
public final class ParameterStorage: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let trainable: Bool
    let count: Int
    private(set) var region: FloatRegion
    /// Set once a `ParameterStore` holds the values.
    private(set) var isGathered = false
    let lock = ReadWriteLock()

    /// The values' address; read it holding `lock`.
    var floats: UnsafeMutablePointer<Float> { region.floats }

    /// Throws when a value is NaN or infinite.
    public init(name: String, tensor: Tensor, trainable: Bool) throws {
        if let bad = tensor.firstNonFiniteIndex {
            throw QLoraError.invalidArgument("parameter '\(name)': non-finite value \(tensor.scalars[bad]) at flat index \(bad)")
        }
        self.name = name
        self.shape = tensor.shape
        self.count = tensor.count
        self.trainable = trainable
        region = FloatRegion(count: tensor.count)
        tensor.scalars.withUnsafeBufferPointer { region.floats.update(from: $0.baseAddress!, count: tensor.count) }
    }

    /// A copy of the current values.
    public var tensor: Tensor {
        lock.read { Tensor(uncheckedShape: shape, scalars: Array(UnsafeBufferPointer(start: region.floats, count: count))) }
    }

    /// Replaces the values; the shape must match and every value must be finite.
    public func assign(_ tensor: Tensor, context: String? = nil) throws {
        let what = context ?? "parameter '\(name)'"
        guard tensor.shape == shape else {
            throw QLoraError.shapeMismatch(context: what, expected: shape, actual: tensor.shape)
        }
        if let bad = tensor.firstNonFiniteIndex {
            throw QLoraError.invalidArgument("\(what): non-finite value \(tensor.scalars[bad]) at flat index \(bad)")
        }
        lock.write { tensor.scalars.withUnsafeBufferPointer { region.floats.update(from: $0.baseAddress!, count: count) } }
    }

    var memoryBytes: Int { count * 4 }

    /// Copies the values into `region` and reads them from there from now on.
    func move(to region: FloatRegion) {
        lock.write {
            region.floats.update(from: self.region.floats, count: count)
            self.region = region
            isGathered = true
        }
    }
}
