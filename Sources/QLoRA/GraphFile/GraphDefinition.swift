/// A graph file (docs/graph-format.md) after parsing and `repeat` expansion, before any weights
/// are read: names, symbolic shapes and ops, each remembering its JSON path for error messages.
public struct GraphDefinition: Sendable, Equatable {
    /// One dimension of a declared shape: a number, or a name resolved at load time.
    public enum Dim: Sendable, Equatable, CustomStringConvertible {
        case fixed(Int)
        case named(String)

        public var description: String {
            switch self {
            case let .fixed(n): return String(n)
            case let .named(s): return s
            }
        }

        /// The dimension in the IR: the size, or the symbolic dimension of the name.
        var ir: Int {
            switch self {
            case let .fixed(n): return n
            case let .named(s): return SymbolicDimension.named(s)
            }
        }
    }

    /// A declared shape: an optional leading "..." (the batch dimensions of the inputs) and the trailing dims.
    public struct Shape: Sendable, Equatable, CustomStringConvertible {
        public var batch: Bool
        public var dims: [Dim]

        public var description: String { "[" + ((batch ? ["..."] : []) + dims.map(\.description)).joined(separator: ", ") + "]" }
    }

    public struct Input: Sendable, Equatable {
        public var name: String
        public var shape: Shape
        public var path: String
        /// float32 (default) or int32 (token ids, labels: `"dtype": "int32"`).
        public var element: ElementType = .float32
    }

    /// A number an op attribute gives directly, or names from the model's config (`--model`):
    /// `rms_norm_eps`, or `rope_theta` (which brings the model's RoPE scaling along).
    public enum Constant: Sendable, Equatable, CustomStringConvertible {
        case value(Float)
        case model(String)

        public var description: String {
            switch self {
            case let .value(v): return "\(v)"
            case let .model(name): return name
            }
        }
    }

    public struct Output: Sendable, Equatable {
        public var name: String
        public var value: String
        public var path: String
    }

    /// What an op computes; the attributes each kind needs.
    public enum Kind: Sendable, Equatable {
        /// A QuantizedLinear over checkpoint module `module` (`<module>.weight`, optional `<module>.bias`);
        /// `out` is its output features when the graph names them (needed without weights).
        case linear(module: String, out: Dim?, bias: BiasRule)
        /// RMSNorm whose weight is the checkpoint tensor `weight`.
        case rmsNorm(weight: String, eps: Constant)
        /// Rows of the f32 table `weight` [vocab, dim] for int32 ids.
        case embedding(weight: String)
        /// x·Wᵀ with the full-precision checkpoint tensor `weight` [out, in], or `fallback` when the
        /// checkpoint has no `weight` (a lm_head tied to the embeddings).
        case dense(weight: String, fallback: String?)
        /// RoPE (half-split) over [..., seq, heads·head_dim].
        case rope(heads: Dim, headDim: Dim, theta: Constant)
        /// Causal grouped-query attention of q, k, v (one fused step).
        case attention(heads: Dim, kvHeads: Dim, headDim: Dim)
        /// A new shape for the value, in declared (possibly named) dimensions.
        case reshape(Shape)
        /// An IR op spelled by its definition (add, mul, silu, scale, ...): its name and the
        /// attributes as the file gives them.
        case primitive(name: String, attributes: JSONValue)

        public var name: String {
            switch self {
            case .linear: return "linear"
            case .rmsNorm: return "rms_norm"
            case .embedding: return "embedding"
            case .dense: return "dense"
            case .rope: return "rope"
            case .attention: return "attention"
            case .reshape: return "reshape"
            case let .primitive(name, _): return name
            }
        }

        var arity: Int {
            if case let .primitive(name, _) = self { return OpRegistry.graphFileOp(name)?.arity ?? 1 }
            if case .attention = self { return 3 }
            return 1
        }
    }

    /// Whether a linear layer has a bias.
    public enum BiasRule: String, Sendable, Equatable {
        /// Use `<module>.bias` when the checkpoint has it.
        case auto
        /// The checkpoint must have `<module>.bias`.
        case required
        /// Ignore any bias in the checkpoint.
        case none
    }

    public struct OpDef: Sendable, Equatable {
        public var kind: Kind
        public var inputs: [String]
        public var output: String
        /// The JSON path of the op, e.g. `$.ops[3]` or `$.ops[2].repeat.ops[1] (i=1)`.
        public var path: String
    }

    public var name: String
    public var description: String
    /// Default values of named dimensions (`dims` in the file); `--dim` and inputs override.
    public var dims: [String: Int]
    public var inputs: [Input]
    public var ops: [OpDef]
    public var outputs: [Output]
    /// The file the definition came from (for error messages).
    public var file: String
}
