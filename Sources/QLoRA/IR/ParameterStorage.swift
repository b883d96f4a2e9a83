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
    /// float32, or bfloat16 (half the memory; values rounded to nearest even when stored).
    public let element: ElementType
    let count: Int
    private(set) var region: FloatRegion
    /// Set once a `ParameterStore` holds the values.
    private(set) var isGathered = false
    /// The lock of the domain the values belong to (a model's, a layer's, or their own), shared
    /// with the domain's other buffers; fixed for the storage's life, so plans collect it once.
    let lock: ReadWriteLock
    /// The values' exact int8 form when they have one (frozen f32 matrices only; kept in step with
    /// `assign`); read it holding `lock`.
    private(set) var exactInt8: ExactInt8Form?

    /// The values' address; read it holding `lock`.
    var floats: UnsafeMutablePointer<Float> { region.floats }

    /// Stores `tensor` as `element` (float32 or bfloat16). Throws when a value is NaN or infinite.
    public convenience init(name: String, tensor: Tensor, trainable: Bool, element: ElementType = .float32) throws {
        try self.init(name: name, tensor: tensor, trainable: trainable, element: element, lock: ReadWriteLock())
    }

    /// A storage in the lock domain of `lock` (the model or layer that owns it).
    init(name: String, tensor: Tensor, trainable: Bool, element: ElementType = .float32, lock: ReadWriteLock) throws {
        if let bad = tensor.firstNonFiniteIndex {
            throw QLoraError.invalidArgument("parameter '\(name)': non-finite value \(tensor.scalars[bad]) at flat index \(bad)")
        }
        guard element == .float32 || element == .bfloat16 else {
            throw QLoraError.invalidArgument("parameter '\(name)': a parameter holds float32 or bfloat16 values, not \(element)")
        }
        self.name = name
        self.lock = lock
        self.shape = tensor.shape
        self.count = tensor.count
        self.trainable = trainable
        self.element = element
        region = FloatRegion(count: (tensor.count * element.byteWidth + 3) / 4)
        store(tensor.scalars)
    }

    private func refreshExactInt8() {
        exactInt8 = ExactInt8Form.worthChecking(shape: shape, trainable: trainable, element: element)
            ? ExactInt8Form(values: region.floats, rows: shape[0], cols: shape[1]) : nil
    }

    /// A copy of the current values (bfloat16 ones widened exactly to f32).
    public var tensor: Tensor {
        lock.read {
            let values = element == .bfloat16
                ? UnsafeBufferPointer(start: bfloat16Bits, count: count).map { Float(bitPattern: UInt32($0) << 16) }
                : Array(UnsafeBufferPointer(start: region.floats, count: count))
            return Tensor(uncheckedShape: shape, scalars: values)
        }
    }

    private var bfloat16Bits: UnsafeMutablePointer<UInt16> { UnsafeMutableRawPointer(region.floats).assumingMemoryBound(to: UInt16.self) }

    /// Writes `values` in the storage's element type (caller holds the write lock or owns self).
    private func store(_ values: [Float]) {
        defer { refreshExactInt8() }
        if element == .bfloat16 {
            for (i, v) in values.enumerated() {
                // Round to nearest even: add half an ulp of bf16 (minus one when the kept bit is even).
                let bits = v.bitPattern
                bfloat16Bits[i] = UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
            }
        } else {
            values.withUnsafeBufferPointer { region.floats.update(from: $0.baseAddress!, count: count) }
        }
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
        lock.write { store(tensor.scalars) }
    }

    var memoryBytes: Int { count * element.byteWidth }

    /// Copies the values into `region` and reads them from there from now on.
    func move(to region: FloatRegion) {
        lock.write {
            region.floats.update(from: self.region.floats, count: count)
            self.region = region
            isGathered = true
        }
    }
}
