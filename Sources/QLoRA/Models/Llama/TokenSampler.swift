import Foundation

/// How the next token is chosen from the logits: greedy (argmax, lowest id on ties), or sampling
/// with transformers' warpers in its order — temperature, then top-k (every token whose logit is
/// ≥ the k-th largest survives), then top-p (drop the least likely tokens whose ascending
/// cumulative probability is ≤ 1 − top_p, keeping at least one) — then a draw from the
/// renormalised distribution with a seeded SplitMix64 (same seed, same tokens on any machine or
/// thread count; torch's multinomial stream is not reproduced, so sampled text matches
/// transformers in distribution, not token for token). SamplerTests checks the surviving tokens
/// and their probabilities against transformers' warpers.
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

    /// The next token for one row of logits (callers reject NaN logits first: LlamaGenerator does).
    public mutating func next(_ logits: ArraySlice<Float>) -> Int {
        guard temperature > 0 else { return TokenSampler.argmax(logits) }
        let c = TokenSampler.candidates(logits, temperature: temperature, topK: topK, topP: topP)
        let u = Double(rng.next() >> 11) / Double(1 << 53)
        var acc = 0.0
        for (id, p) in c {
            acc += p
            if u < acc { return id }
        }
        return c[c.count - 1].id
    }

    /// First index of the largest value (torch.argmax's tie rule), relative to the slice start.
    static func argmax(_ logits: ArraySlice<Float>) -> Int {
        var best = logits.startIndex
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return best - logits.startIndex
    }

    /// The tokens that survive the warpers with their probabilities (summing to 1), most likely
    /// first, ids relative to the slice start.
    static func candidates(_ logits: ArraySlice<Float>, temperature: Float, topK: Int?, topP: Float?) -> [(id: Int, p: Double)] {
        let base = logits.startIndex
        // Descending, ties with the higher id first: read backwards this is torch's stable ascending
        // sort, from whose front TopPLogitsWarper removes (so among equal logits the lower id goes first).
        var order = Array(logits.indices).sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 > $1) }
        if let topK, topK > 0, topK < order.count {
            let kth = logits[order[topK - 1]]
            order = order.filter { logits[$0] >= kth }
        }
        let top = Double(logits[order[0]]), t = Double(temperature)
        var p = order.map { exp((Double(logits[$0]) - top) / t) }
        let z = p.reduce(0, +)
        p = p.map { $0 / z }
        if let topP, topP < 1 {
            var dropped = 0, cumulative = 0.0
            for w in p.reversed() {
                cumulative += w
                if cumulative <= 1 - Double(topP), dropped < p.count - 1 { dropped += 1 } else { break }
            }
            order.removeLast(dropped)
            p.removeLast(dropped)
            let kept = p.reduce(0, +)
            p = p.map { $0 / kept }
        }
        return zip(order, p).map { (id: $0 - base, p: $1) }
    }
}
