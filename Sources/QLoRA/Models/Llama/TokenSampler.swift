import Foundation

/// How the next token is chosen from the logits: greedy (argmax, lowest id on ties), or sampling
/// with a temperature, optionally restricted to the `topK` most likely tokens and/or the smallest
/// set whose probability reaches `topP` (nucleus), from a seeded generator (same seed, same tokens).
public struct TokenSampler: Sendable {
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    private var rng: SplitMix64

    /// Greedy decoding.
    public static var greedy: TokenSampler { TokenSampler(temperature: 0) }

    /// temperature 0 is greedy; topK ≥ 1; topP in (0, 1].
    public init(temperature: Float, topK: Int? = nil, topP: Float? = nil, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        rng = SplitMix64(seed: seed)
    }

    public func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw QLoraError.invalidArgument("--temperature must be >= 0, got \(temperature)") }
        if let topK, topK < 1 { throw QLoraError.invalidArgument("--top-k must be >= 1, got \(topK)") }
        if let topP, !(topP > 0 && topP <= 1) { throw QLoraError.invalidArgument("--top-p must be in (0, 1], got \(topP)") }
    }

    public mutating func next(_ logits: ArraySlice<Float>) -> Int {
        let base = logits.startIndex
        guard temperature > 0 else {
            var best = base
            for i in logits.indices where logits[i] > logits[best] { best = i }
            return best - base
        }
        // Candidates by decreasing logit (ties: lower id first).
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        if let topK { order = Array(order.prefix(topK)) }
        let top = Double(logits[order[0]])
        var p = order.map { exp((Double(logits[$0]) - top) / Double(temperature)) }
        let z = p.reduce(0, +)
        p = p.map { $0 / z }
        if let topP {
            var total = 0.0, keep = 0
            while keep < p.count { total += p[keep]; keep += 1; if total >= Double(topP) { break } }
            order = Array(order.prefix(keep))
            p = Array(p.prefix(keep))
        }
        let u = Double(rng.next() >> 11) / Double(1 << 53) * p.reduce(0, +)
        var acc = 0.0
        for (i, pi) in p.enumerated() {
            acc += pi
            if u < acc { return order[i] - base }
        }
        return order[p.count - 1] - base
    }
}
