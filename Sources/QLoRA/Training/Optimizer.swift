import CQLoRAKernels

/// An optimizer over a `ParameterStore`'s flat buffers. Either `Graph.backward(from:optimizer:)`
/// adds its step to the training plan (after every gradient is written), or `step(...)` runs it
/// directly on the store's gradient buffer (what `Trainer` does: it needs the gradient norm for
/// clipping and a scheduled learning rate first). The moments are persistent state the
/// optimizer owns, so they carry over between runs, plans and checkpoints.
public final class Optimizer: @unchecked Sendable {
    public enum Method: Sendable, Equatable {
        /// torch.optim.SGD without dampening or weight decay: buf = momentum·buf + g; p −= lr·buf.
        /// With momentum 0 the step is exactly p −= lr·g.
        case sgd(learningRate: Double, momentum: Double)
        /// torch.optim.AdamW: decoupled weight decay p·= 1 − lr·wd, bias-corrected moments,
        /// p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps). Hyperparameters are doubles, as torch's
        /// python floats are; each coefficient is rounded to float32 where it meets a tensor.
        case adamW(learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double)

        public static func sgd(learningRate: Double) -> Method { .sgd(learningRate: learningRate, momentum: 0) }
        /// AdamW with torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
        public static func adamW(learningRate: Double, weightDecay: Double = 0.01) -> Method {
            .adamW(learningRate: learningRate, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: weightDecay)
        }

        /// The base learning rate (what a schedule multiplies).
        public var learningRate: Double {
            switch self {
            case let .sgd(lr, _): return lr
            case let .adamW(lr, _, _, _, _): return lr
            }
        }

        /// The same method with another learning rate.
        public func with(learningRate lr: Double) -> Method {
            switch self {
            case let .sgd(_, momentum): return .sgd(learningRate: lr, momentum: momentum)
            case let .adamW(_, b1, b2, eps, wd): return .adamW(learningRate: lr, beta1: b1, beta2: b2, epsilon: eps, weightDecay: wd)
            }
        }
    }

    public let method: Method
    public let parameters: ParameterStore
    /// SGD: [momentum buffer]; AdamW: [m, v, step count].
    let states: [StateStorage]
    /// What a step holds: the parameters' domains and the optimizer's own for writing, the
    /// store's gradient domain for reading, in the one global order.
    private let stepLocks: LockSet

    public init(_ method: Method, parameters: ParameterStore) throws {
        self.method = method
        self.parameters = parameters
        let n = max(parameters.count, 1)
        let lock = ReadWriteLock()   // one domain for the optimizer's state buffers
        switch method {
        case .sgd:
            states = [try StateStorage(name: "sgd.momentum", shape: [n], lock: lock)]
        case .adamW:
            states = [try StateStorage(name: "adamw.m", shape: [n], lock: lock), try StateStorage(name: "adamw.v", shape: [n], lock: lock),
                      try StateStorage(name: "adamw.step", shape: [1], lock: lock)]
        }
        stepLocks = parameters.parameterLocks.union(LockSet(reading: [parameters.gradientLock], writing: [lock]))
    }

    static func stateCount(_ method: Method) -> Int {
        switch method {
        case .sgd: return 1
        case .adamW: return 3
        }
    }

    /// Steps taken so far (AdamW's bias-correction count; SGD keeps none and returns nil).
    public var stepCount: Int? {
        guard case .adamW = method else { return nil }
        return Int(states[2].tensor.scalars[0])
    }

    /// One update from the store's current gradients (`ParameterStore.gradients`), each first
    /// multiplied by `gradientScale` (a clip coefficient, see `GradientNorm`), with `learningRate`
    /// instead of the method's when given (a schedule's value).
    public func step(learningRate: Double? = nil, gradientScale: Float = 1, threads: Int = Runtime.defaultThreads) {
        let store = parameters
        let n = Int64(store.count)
        guard n > 0 else { return }
        stepLocks.lock()
        defer { stepLocks.unlock() }
        let p = store.flatParameterState.region.floats, g = UnsafePointer(store.flatGradientState.region.floats)
        switch method.with(learningRate: learningRate ?? method.learningRate) {
        case let .sgd(lr, momentum):
            cq_sgd_step(p, g, momentum == 0 ? nil : states[0].region.floats, n, lr, momentum, gradientScale, Int32(threads))
        case let .adamW(lr, b1, b2, eps, wd):
            cq_adamw_step(p, g, states[0].region.floats, states[1].region.floats, states[2].region.floats, n,
                          lr, b1, b2, eps, wd, gradientScale, Int32(threads))
        }
    }

    /// The optimizer's state by name ("sgd.momentum" or "adamw.m", "adamw.v", "adamw.step"), for checkpoints.
    public var stateTensors: [String: Tensor] {
        Dictionary(uniqueKeysWithValues: states.map { ($0.name, $0.tensor) })
    }

    /// Restores what `stateTensors` gave (a checkpoint of an optimizer of the same method and store layout).
    public func restoreState(_ tensors: [String: Tensor], source: String) throws {
        for s in states {
            guard let t = tensors[s.name] else {
                throw QLoraError.invalidArgument("\(source): no optimizer state '\(s.name)' (the checkpoint was written by another optimizer?)")
            }
            guard t.count == s.count else {
                throw QLoraError.shapeMismatch(context: "\(source): optimizer state '\(s.name)'", expected: s.shape, actual: t.shape)
            }
            s.write { t.scalars.withUnsafeBufferPointer { s.region.floats.update(from: $0.baseAddress!, count: s.count) } }
        }
    }
}
