import Foundation

/// A Llama-family causal LM as IR: embedding, `layers` pre-norm decoder blocks (RMSNorm → q/k/v
/// 4-bit projections → RoPE → fused causal GQA attention → o_proj → residual; RMSNorm →
/// gate/up → SiLU·mul → down → residual), the final RMSNorm and the lm_head (its own f32 weight,
/// or the embedding matrix when tied). The 7 projections per layer are 4-bit QuantizedLinears
/// (with LoRA where the adapter or `loraTargets` says, as PEFT); embeddings, norms and lm_head
/// stay f32, as bitsandbytes leaves them. `record` adds the model to any graph, so one plan can
/// run inference, or a training step after `Graph.backward` (docs/llama.md).
public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    public let embedTokens: ParameterStorage
    /// nil when tied to `embedTokens`.
    public let lmHead: ParameterStorage?
    public let finalNorm: ParameterStorage
    public let layers: [Layer]

    /// One decoder block's weights.
    public struct Layer: @unchecked Sendable {
        public let inputNorm: ParameterStorage
        public let postAttentionNorm: ParameterStorage
        public let q, k, v, o, gate, up, down: QuantizedLinear
        /// The projections in module order (q, k, v, o, gate, up, down).
        public var projections: [QuantizedLinear] { [q, k, v, o, gate, up, down] }
    }

    /// The projections with LoRA, in PEFT's order (layer by layer, module order).
    public var loraLayers: [QuantizedLinear] { layers.flatMap { $0.projections.filter(\.hasLora) } }
    /// LoRA A and B of every adapted projection, in PEFT's `named_parameters` order.
    public var trainableParameters: [ParameterStorage] { loraLayers.flatMap(\.trainableParameters) }

    /// Loads a model directory or GGUF file (see `LlamaCheckpoint`). LoRA: the adapter's modules
    /// get its weights and scaling; without an adapter, the projections whose last name component
    /// is in `loraTargets` get a fresh PEFT init (A kaiming-uniform seeded by `seed`, B zero) with
    /// `freshLora`'s rank and alpha. Every other projection is a frozen base layer.
    public static func load(_ url: URL, adapter: LoraAdapter? = nil, quantization: QuantizeOptions = QuantizeOptions(),
                            loraTargets: [String] = [], freshLora: QLoraConfig = QLoraConfig(), seed: UInt64 = 0) throws -> LlamaModel {
        try LlamaModel(checkpoint: LlamaCheckpoint(url: url, quantization: quantization), adapter: adapter,
                       loraTargets: loraTargets, freshLora: freshLora, seed: seed)
    }

    public init(checkpoint w: LlamaCheckpoint, adapter: LoraAdapter? = nil, loraTargets: [String] = [],
                freshLora: QLoraConfig = QLoraConfig(), seed: UInt64 = 0) throws {
        let c = w.config
        config = c
        // One lock domain for every f32 parameter of the model (norms, tables, biases, adapters).
        let lock = ReadWriteLock()
        func param(_ name: String, _ shape: [Int]) throws -> ParameterStorage {
            try ParameterStorage(name: name, tensor: w.tensor(name, shape: shape, neededBy: "the Llama model (config \(shape))"), trainable: false,
                                 lock: lock)
        }
        embedTokens = try param("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize])
        finalNorm = try param("model.norm.weight", [c.hiddenSize])
        if c.tieWordEmbeddings { lmHead = nil }
        else { lmHead = try param("lm_head.weight", [c.vocabSize, c.hiddenSize]) }
        var used = Set<String>()
        var layers: [Layer] = []
        var count: UInt64 = 0
        for i in 0..<c.layers {
            func linear(_ module: String, out: Int, in inF: Int, bias: Bool) throws -> QuantizedLinear {
                let path = "model.layers.\(i).\(module)", neededBy = "layer \(i) of the Llama model"
                let weight = try w.quantizedWeight("\(path).weight", shape: [out, inF], neededBy: neededBy)
                let b = bias ? try w.tensor("\(path).bias", shape: [out], neededBy: neededBy) : nil
                var layerConfig = freshLora, lora = false
                if let a = adapter?.modules[path] {
                    layerConfig = try GraphDefinition.config(for: a)
                    lora = true
                } else if adapter == nil, loraTargets.contains(String(module.split(separator: ".").last!)) {
                    lora = true
                }
                count += 1
                let layer = try QuantizedLinear(quantizedWeight: weight, bias: b, config: layerConfig, name: path, seed: seed &+ count, lora: lora,
                                                parameterLock: lock)
                if let a = adapter?.modules[path] {
                    guard a.a.shape == [a.rank, inF], a.b.shape == [out, a.rank] else {
                        throw QLoraError.shapeMismatch(context: "adapter weights of '\(path)' (lora_A [r, in], lora_B [out, r])",
                                                       expected: [a.rank, inF, out, a.rank], actual: a.a.shape + a.b.shape)
                    }
                    try layer.setLoraWeights(a: a.a, b: a.b)
                    used.insert(path)
                }
                return layer
            }
            let h = c.hiddenSize, qOut = c.heads * c.headDim, kvOut = c.kvHeads * c.headDim, ab = c.attentionBias, mb = c.mlpBias
            layers.append(Layer(
                inputNorm: try param("model.layers.\(i).input_layernorm.weight", [h]),
                postAttentionNorm: try param("model.layers.\(i).post_attention_layernorm.weight", [h]),
                q: try linear("self_attn.q_proj", out: qOut, in: h, bias: ab), k: try linear("self_attn.k_proj", out: kvOut, in: h, bias: ab),
                v: try linear("self_attn.v_proj", out: kvOut, in: h, bias: ab), o: try linear("self_attn.o_proj", out: h, in: qOut, bias: ab),
                gate: try linear("mlp.gate_proj", out: c.intermediateSize, in: h, bias: mb),
                up: try linear("mlp.up_proj", out: c.intermediateSize, in: h, bias: mb),
                down: try linear("mlp.down_proj", out: h, in: c.intermediateSize, bias: mb)))
        }
        if let adapter, let extra = adapter.modules.keys.sorted().first(where: { !used.contains($0) }) {
            throw QLoraError.invalidArgument("adapter has weights for '\(extra)', which is not a projection of this \(c.layers)-layer Llama model")
        }
        self.layers = layers
    }

    /// The values `record` adds: logits [batch, seq, vocab] and what transformers exposes on the way.
    public struct Outputs {
        public let logits: Value
        /// Each decoder layer's output (the residual stream after its MLP add).
        public let hiddenStates: [Value]
        /// The final RMSNorm's output (the lm_head's input).
        public let finalNorm: Value
    }

    /// Records the model over int32 `inputIds` [batch, seq] (positions `positionOffset + t`).
    /// With `cache`, the positions, the cache write position and the live length are int32
    /// inputs read at run time, each layer's k/v rows are written into the cache's state and the
    /// attention reads the cache (`LlamaGenerator` drives this). With `lastPositionOnly`, the
    /// logits are [batch, 1, vocab]: the lm_head runs on the last position only (generation).
    /// With `positionIds` (int32 [batch, seq], restarting at 0 for each example) the rows are
    /// packed: RoPE takes those positions and attention stays inside each example.
    public func record(inputIds ids: Value, positionOffset: Int = 0, cache: LlamaKVCache.Inputs? = nil,
                       lastPositionOnly: Bool = false, positionIds: Value? = nil) throws -> Outputs {
        let g = ids.graph, c = config
        if positionIds != nil, cache != nil || positionOffset != 0 {
            throw QLoraError.invalidArgument("Llama position_ids (packed rows) do not combine with a KV cache or a position offset")
        }
        let ropePositions = cache?.positions ?? positionIds
        guard ids.type.element == .int32, ids.shape.count == 2 else {
            throw QLoraError.shapeMismatch(context: "Llama input_ids (int32 [batch, seq])", expected: [1, 1], actual: ids.shape)
        }
        let table = g.parameter(embedTokens)
        var h = try g.embedding(ids, table: table, label: "model.embed_tokens")
        var hidden: [Value] = []
        for (i, l) in layers.enumerated() {
            let p = "model.layers.\(i)"
            let n = try g.rmsNorm(h, weight: g.parameter(l.inputNorm), eps: c.rmsNormEps, label: "\(p).input_layernorm")
            let q = try g.rope(try l.q(n), heads: c.heads, headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling,
                               offset: positionOffset, positions: ropePositions, label: "\(p).self_attn.rope_q")
            var k = try g.rope(try l.k(n), heads: c.kvHeads, headDim: c.headDim, theta: c.ropeTheta, scaling: c.ropeScaling,
                               offset: positionOffset, positions: ropePositions, label: "\(p).self_attn.rope_k")
            var v = try l.v(n)
            if let cache {
                k = try g.kvWrite(g.state(cache.cache.keys[i]), k, at: cache.writeAt, label: "\(p).self_attn.k_cache")
                v = try g.kvWrite(g.state(cache.cache.values[i]), v, at: cache.writeAt, label: "\(p).self_attn.v_cache")
            }
            let a = try g.attention(q: q, k: k, v: v, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
                                    kvLength: cache?.kvLength, positionIds: positionIds, label: "\(p).self_attn")
            h = try g.add(h, try l.o(a), label: "\(p).attn_residual")
            let n2 = try g.rmsNorm(h, weight: g.parameter(l.postAttentionNorm), eps: c.rmsNormEps, label: "\(p).post_attention_layernorm")
            let act = try g.mul(try g.silu(try l.gate(n2), label: "\(p).mlp.act"), try l.up(n2), label: "\(p).mlp.inner")
            h = try g.add(h, try l.down(act), label: "\(p).mlp_residual")
            hidden.append(h)
        }
        let norm = try g.rmsNorm(h, weight: g.parameter(finalNorm), eps: c.rmsNormEps, label: "model.norm")
        let headInput = lastPositionOnly ? try g.lastPosition(norm, label: "model.norm.last_position") : norm
        let logits = try g.matmul(headInput, lmHead.map { g.parameter($0) } ?? table, label: "lm_head")
        return Outputs(logits: logits, hiddenStates: hidden, finalNorm: norm)
    }

    /// A graph with input `input_ids` (int32 [batch, seq]) and output `logits`, ready to compile.
    public func graph(batch: Int, seq: Int) throws -> (graph: Graph, outputs: Outputs) {
        let g = Graph()
        let out = try record(inputIds: g.input("input_ids", shape: [batch, seq], element: .int32))
        g.output("logits", out.logits)
        return (g, out)
    }

    /// Logits [batch, seq, vocab] for `inputIds` [batch, seq] (one compile, one run).
    public func logits(_ inputIds: IntTensor, options: CompileOptions = CompileOptions()) throws -> Tensor {
        guard inputIds.shape.count == 2, inputIds.shape.allSatisfy({ $0 > 0 }) else {
            throw QLoraError.shapeMismatch(context: "Llama input_ids [batch, seq]", expected: [1, 1], actual: inputIds.shape)
        }
        let (g, _) = try graph(batch: inputIds.shape[0], seq: inputIds.shape[1])
        return try g.compile(options).run([:], ids: ["input_ids": inputIds])["logits"]!
    }
}
