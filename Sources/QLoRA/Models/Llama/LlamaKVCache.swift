/// A Llama model's KV cache: per layer, keys and values [batch, capacity, kvHeads·headDim] as
/// persistent plan state, shared by the prefill and decode plans of a `LlamaGenerator`. `length`
/// is how many positions are filled.
public final class LlamaKVCache: @unchecked Sendable {
    public let batch: Int
    public let capacity: Int
    public let keys: [StateStorage]
    public let values: [StateStorage]
    /// Positions written so far (the next token's position).
    public internal(set) var length = 0

    public init(config c: LlamaConfig, batch: Int = 1, capacity: Int) throws {
        guard batch > 0, capacity > 0 else { throw QLoraError.invalidArgument("a KV cache needs batch > 0 and capacity > 0, got \(batch), \(capacity)") }
        self.batch = batch
        self.capacity = capacity
        let shape = [batch, capacity, c.kvHeads * c.headDim]
        let lock = ReadWriteLock()   // one lock domain for every layer's keys and values
        keys = try (0..<c.layers).map { try StateStorage(name: "model.layers.\($0).self_attn.k_cache", shape: shape, lock: lock) }
        values = try (0..<c.layers).map { try StateStorage(name: "model.layers.\($0).self_attn.v_cache", shape: shape, lock: lock) }
    }

    /// The run-time int32 inputs a cached graph reads: `positions` [batch, seq] (RoPE),
    /// `write_at` [1] (where this step's k/v rows go) and `kv_length` [1] (live rows after the write).
    public struct Inputs {
        public let cache: LlamaKVCache
        public let positions: Value
        public let writeAt: Value
        public let kvLength: Value
    }

    /// Declares the three inputs in `g` for steps of `seq` tokens.
    public func inputs(in g: Graph, seq: Int) -> Inputs {
        Inputs(cache: self, positions: g.input("positions", shape: [batch, seq], element: .int32),
               writeAt: g.input("write_at", shape: [1], element: .int32), kvLength: g.input("kv_length", shape: [1], element: .int32))
    }

    /// Forgets every position (the buffers are overwritten as positions are written again).
    public func reset() { length = 0 }
}
