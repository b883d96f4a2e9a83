/// An optimizer over a `ParameterStore`'s flat buffers. `Graph.backward(from:optimizer:)` adds its
/// step to the training plan, after every gradient is written; the moments are persistent state
/// the optimizer owns, so they carry over between runs and between plans.
public final class Optimizer: @unchecked Sendable {
    public enum Method: Sendable, Equatable {
        /// torch.optim.SGD without dampening or weight decay: buf = momentum·buf + g; p −= lr·buf.
        /// With momentum 0 the step is exactly p −= lr·g.
        case sgd(learningRate: Float, momentum: Float)
        /// torch.optim.AdamW: decoupled weight decay p·= 1 − lr·wd, bias-corrected moments,
        /// p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + eps).
        case adamW(learningRate: Float, beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float)

        public static func sgd(learningRate: Float) -> Method { .sgd(learningRate: learningRate, momentum: 0) }
        /// AdamW with torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
        public static func adamW(learningRate: Float, weightDecay: Float = 0.01) -> Method {
            .adamW(learningRate: learningRate, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: weightDecay)
        }
    }

    public let method: Method
    public let parameters: ParameterStore
    /// SGD with momentum: [buffer]; AdamW: [m, v, step count].
    let states: [StateStorage]

    public init(_ method: Method, parameters: ParameterStore) throws {
        self.method = method
        self.parameters = parameters
        let n = max(parameters.count, 1)
        switch method {
        case let .sgd(_, momentum):
            states = [try StateStorage(name: "sgd.momentum", shape: [n])]
            _ = momentum
        case .adamW:
            states = [try StateStorage(name: "adamw.m", shape: [n]), try StateStorage(name: "adamw.v", shape: [n]),
                      try StateStorage(name: "adamw.step", shape: [1])]
        }
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
}
