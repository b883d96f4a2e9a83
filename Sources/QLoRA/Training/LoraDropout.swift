import CQLoRAKernels
import Foundation

/// LoRA dropout as PEFT places it: on the LoRA branch's input, before A (`lora_B(lora_A(dropout(x)))`),
/// inverted (kept elements scaled by 1/(1−p), as torch's nn.Dropout), active only in training.
///
/// The mask is counter-based: element i of layer `stream` at training step `step` is kept when a
/// hash of (seed, stream, step, i) says so (`cq_dropout_keeps`), so it never depends on the thread
/// count or on evaluation order, a checkpoint restores it with two integers, and the backward
/// recomputes the same mask instead of storing it. One context is shared by the layers of a model;
/// the trainer sets `step` before each micro-batch and `isTraining` while it runs (a new context
/// starts in eval mode, where the op is the identity).
public final class LoraDropout: @unchecked Sendable {
    public let probability: Float
    public let seed: UInt64
    private var currentStep: UInt64 = 0
    private var training = false
    private let lock = NSLock()

    public init(probability: Float, seed: UInt64) throws {
        guard probability.isFinite, probability >= 0, probability < 1 else {
            throw QLoraError.invalidArgument("LoRA dropout probability must be in [0, 1), got \(probability)")
        }
        self.probability = probability
        self.seed = seed
    }

    /// The counter the mask is keyed by (the trainer's micro-batch index).
    public var step: UInt64 {
        get { lock.lock(); defer { lock.unlock() }; return currentStep }
        set { lock.lock(); currentStep = newValue; lock.unlock() }
    }

    /// Training applies the mask; evaluation is the identity.
    public var isTraining: Bool {
        get { lock.lock(); defer { lock.unlock() }; return training }
        set { lock.lock(); training = newValue; lock.unlock() }
    }

    /// The factor kept elements get: 1/(1−p) in float32, as torch's `bernoulli_(1−p).div_(1−p)`.
    public var scale: Float { 1 / Float(1 - Double(probability)) }

    /// The mask's key for layer `stream` at the current step.
    func key(stream: UInt64) -> UInt64 { cq_dropout_key(seed, stream, step) }

    /// Whether element `index` of layer `stream`'s input survives at the current step (for tests
    /// and for anyone reproducing the mask outside a plan).
    public func keeps(stream: UInt64, index: Int) -> Bool { cq_dropout_keeps(key(stream: stream), Int64(index), probability) != 0 }

    /// A stable per-layer stream id: FNV-1a of the module name.
    public static func stream(for module: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in module.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

/// y = dropout(x) with `context`'s mask for `stream`; identity while the context is in eval mode.
/// Linear in x with a fixed mask, so its vjp is the same op on the cotangent (same key, same mask).
struct DropoutOp: OpDefinition {
    let context: LoraDropout
    let stream: UInt64
    var name: String { "dropout" }
    var mayReuseOperand: Int? { 0 }
    var jsonAttributes: [(key: String, value: JSONValue)] { [("p", IRDump.number(context.probability))] }
    var bracketAttributes: String { "[p=\(context.probability)]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        try site.arity(1)
        return ValueType(shape: try site.f32(0, "input"), element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        input.elementwise(DropoutKernel(context: context, stream: stream, count: input.count), flopsPerElement: 8)
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        [try d.emit(Op(self), [cotangent], label: "grad.\(node.label)")]
    }
}

struct DropoutKernel: StepKernel {
    let context: LoraDropout
    let stream: UInt64
    let count: Int
    var name: String { "dropout(counter-based mask)" }
    func workSplit(threads: Int) -> String { elementRangeSplit(count, threads: threads) }
    func run(_ io: KernelIO) {
        if context.isTraining, context.probability > 0 {
            cq_dropout(io.f32(0), io.out, Int64(count), context.key(stream: stream), context.probability, context.scale, io.threads)
        } else if io.out != UnsafeMutablePointer(mutating: io.f32(0)) {
            cq_copy(io.f32(0), io.out, Int64(count))
        }
    }
}

extension Graph {
    /// Inverted dropout of `x` with `context`'s counter-based mask for layer `stream`.
    public func dropout(_ x: Value, context: LoraDropout, stream: UInt64, label: String = "") throws -> Value {
        try record(Op(DropoutOp(context: context, stream: stream)), [x], label)
    }
}
