import Foundation

/// Token generation with a KV cache: a prefill plan over the prompt (seq = prompt length), then a
/// decode plan of one token per step; both plans write and read the same cache states, and take
/// the positions, the write position and the live length as int32 inputs, so each plan is
/// compiled once per sequence length and reused. The plans compute the lm_head for the last
/// position only: generation samples from nothing else.
public final class LlamaGenerator: @unchecked Sendable {
    public let model: LlamaModel
    public let cache: LlamaKVCache
    public let options: CompileOptions
    private var plans: [Int: ExecutablePlan] = [:]

    /// Throughput of the last `generate` call.
    public struct Result: Sendable {
        public var tokens: [Int32]
        public var stoppedAtEOS: Bool
        public var prefillTokensPerSecond: Double
        public var decodeTokensPerSecond: Double
    }

    public init(model: LlamaModel, capacity: Int, options: CompileOptions = CompileOptions()) throws {
        self.model = model
        self.options = options
        cache = try LlamaKVCache(config: model.config, capacity: capacity)
    }

    /// Plans kept at once: a chat prefills a different number of tokens each turn, and each
    /// plan holds its own activations, so older prompt lengths are dropped (the decode plan stays).
    static let maxPlans = 6

    func plan(seq: Int) throws -> ExecutablePlan {
        if let p = plans[seq] { return p }
        if plans.count >= LlamaGenerator.maxPlans, let drop = plans.keys.filter({ $0 != 1 }).min() { plans[drop] = nil }
        let g = Graph()
        let ids = g.input("input_ids", shape: [1, seq], element: .int32)
        let out = try model.record(inputIds: ids, cache: cache.inputs(in: g, seq: seq), lastPositionOnly: true)
        g.output("logits", out.logits)
        let p = try g.compile(options)
        plans[seq] = p
        return p
    }

    /// Compiles the plan for `seq` tokens now (so later timings measure running, not compiling).
    public func compile(seq: Int) throws { _ = try plan(seq: seq) }

    /// Runs `tokens` at the next positions of the cache; returns the last position's logits.
    public func feed(_ tokens: [Int32]) throws -> [Float] {
        let n = tokens.count, at = cache.length
        guard n > 0 else { throw QLoraError.invalidArgument("feed: no tokens") }
        guard at + n <= cache.capacity else {
            throw QLoraError.invalidArgument("the KV cache holds \(cache.capacity) positions; \(at) are used and \(n) more do not fit")
        }
        let ids: [String: IntTensor] = [
            "input_ids": try IntTensor(shape: [1, n], scalars: tokens),
            "positions": try IntTensor(shape: [1, n], scalars: (0..<n).map { Int32(at + $0) }),
            "write_at": try IntTensor(shape: [1], scalars: [Int32(at)]),
            "kv_length": try IntTensor(shape: [1], scalars: [Int32(at + n)]),
        ]
        let logits = try plan(seq: n).run([:], ids: ids)["logits"]!.scalars
        cache.length = at + n
        return logits
    }

    /// Prefill with `prompt`, then up to `maxNewTokens` tokens one by one (stopping after an
    /// `eos` token, which is included). Starts from an empty cache.
    public func generate(prompt: [Int32], maxNewTokens: Int, sampler: TokenSampler = .greedy, eos: [Int] = []) throws -> Result {
        try sampler.validate()
        guard !prompt.isEmpty else { throw QLoraError.invalidArgument("the prompt needs at least one token") }
        guard maxNewTokens >= 0 else { throw QLoraError.invalidArgument("--max-new-tokens must be >= 0, got \(maxNewTokens)") }
        if let bad = prompt.first(where: { $0 < 0 || Int($0) >= model.config.vocabSize }) {
            throw QLoraError.invalidArgument("prompt token \(bad) is outside the vocabulary (0..<\(model.config.vocabSize))")
        }
        cache.reset()
        // Compile both plans first, so the rates measure running, not compiling.
        _ = try plan(seq: prompt.count)
        if maxNewTokens > 1 { _ = try plan(seq: 1) }
        var sampler = sampler
        var tokens: [Int32] = []
        let t0 = Date()
        var logits = try feed(prompt)
        let prefill = Date().timeIntervalSince(t0)
        var stopped = false
        let t1 = Date()
        while tokens.count < maxNewTokens {
            if let bad = logits.firstIndex(where: { $0.isNaN }) {
                throw QLoraError.invalidArgument("the model's logits hold NaN (token \(bad), after \(prompt.count + tokens.count) positions): nothing to sample from")
            }
            let next = Int32(sampler.next(logits[...]))
            tokens.append(next)
            if eos.contains(Int(next)) { stopped = true; break }
            if tokens.count == maxNewTokens { break }
            logits = try feed([next])
        }
        let decode = Date().timeIntervalSince(t1)
        let decoded = max(tokens.count - 1, 0)
        return Result(tokens: tokens, stoppedAtEOS: stopped, prefillTokensPerSecond: Double(prompt.count) / max(prefill, 1e-9),
                      decodeTokensPerSecond: decoded > 0 ? Double(decoded) / max(decode, 1e-9) : 0)
    }
}
