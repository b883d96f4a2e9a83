import Foundation

/// How the next token is chosen from a row of logits: greedy (argmax) or sampling with
/// transformers' warpers applied in its order — temperature, then top-k, then top-p — followed by
/// a draw from the renormalised distribution. The draw uses a seeded SplitMix64, so a seed gives
/// the same tokens on every machine and thread count (torch's multinomial stream is not
/// reproduced: sampled text matches transformers in distribution, not token for token).
public struct SamplingOptions: Sendable, Equatable {
    /// 0 means greedy.
    public var temperature: Float
    /// 0 means no top-k cut.
    public var topK: Int
    /// 1 means no nucleus cut.
    public var topP: Float
    public var seed: UInt64

    public static let greedy = SamplingOptions(temperature: 0, topK: 0, topP: 1, seed: 0)

    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public var isGreedy: Bool { temperature == 0 }

    /// Rejects values transformers would reject too, naming the option.
    public func validate() throws {
        guard temperature.isFinite, temperature >= 0 else {
            throw QLoraError.invalidArgument("--temperature must be a finite number >= 0 (0 = greedy), got \(temperature)")
        }
        guard topK >= 0 else { throw QLoraError.invalidArgument("--top-k must be >= 0 (0 = off), got \(topK)") }
        guard topP.isFinite, topP > 0, topP <= 1 else {
            throw QLoraError.invalidArgument("--top-p must be in (0, 1] (1 = off), got \(topP)")
        }
    }
}

public struct Sampler: Sendable {
    public let options: SamplingOptions
    private var generator: SplitMix64

    public init(_ options: SamplingOptions) throws {
        try options.validate()
        self.options = options
        generator = SplitMix64(seed: options.seed)
    }

    /// The next token id for one row of logits. NaN logits are an error rather than a silent pick.
    public mutating func next(_ logits: UnsafeBufferPointer<Float>) throws -> Int {
        guard !logits.isEmpty else { throw QLoraError.invalidArgument("sampling from an empty logits row") }
        if let bad = logits.firstIndex(where: { $0.isNaN }) {
            throw QLoraError.invalidArgument("logits hold NaN at token \(bad): the model's output is not usable")
        }
        if options.isGreedy { return Sampler.argmax(logits) }
        return draw(Sampler.candidates(logits, options))
    }

    public mutating func next(_ logits: [Float]) throws -> Int {
        try logits.withUnsafeBufferPointer { try next($0) }
    }

    /// First index of the largest value (torch.argmax's tie rule).
    static func argmax(_ logits: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return best
    }

    /// The tokens that survive temperature, top-k and top-p, with their probabilities (summing
    /// to 1), most likely first; ties keep the lower id first.
    static func candidates(_ logits: UnsafeBufferPointer<Float>, _ o: SamplingOptions) -> [(id: Int, p: Double)] {
        var order = Array(0..<logits.count)
        order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if o.topK > 0, o.topK < order.count {
            // transformers keeps every token whose logit is >= the k-th largest (ties included).
            let kth = logits[order[o.topK - 1]]
            order = order.filter { logits[$0] >= kth }
        }
        let top = Double(logits[order[0]]), t = Double(o.temperature)
        var weights = order.map { exp((Double(logits[$0]) - top) / t) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        if o.topP < 1 {
            // transformers' TopPLogitsWarper: drop the least likely tokens whose cumulative
            // probability (ascending) is <= 1 - top_p; at least one token survives.
            var dropped = 0, cumulative = 0.0
            for w in weights.reversed() {
                cumulative += w
                if cumulative <= 1 - Double(o.topP), dropped < weights.count - 1 { dropped += 1 } else { break }
            }
            order.removeLast(dropped)
            weights.removeLast(dropped)
            let kept = weights.reduce(0, +)
            weights = weights.map { $0 / kept }
        }
        return zip(order, weights).map { (id: $0, p: $1) }
    }

    private mutating func draw(_ candidates: [(id: Int, p: Double)]) -> Int {
        let u = Double(generator.next() >> 11) / Double(1 << 53)
        var cumulative = 0.0
        for c in candidates {
            cumulative += c.p
            if u < cumulative { return c.id }
        }
        return candidates[candidates.count - 1].id
    }
}
