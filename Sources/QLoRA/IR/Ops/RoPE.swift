import CQLoRAKernels
import Foundation

/// How RoPE's frequencies are rescaled (transformers' `rope_scaling` / `rope_parameters`).
public enum RoPEScaling: Sendable, Equatable {
    /// "default": inv_freq[i] = 1 / theta^(2i / head_dim).
    case none
    /// "llama3": low frequencies divided by `factor`, high ones kept, a smooth blend between
    /// (transformers' `_compute_llama3_parameters`).
    case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
}

/// RoPE's inverse frequencies, in float32 as transformers computes them:
/// inv_freq[i] = 1 / theta^(float32(2i) / head_dim), then the scaling's adjustment.
public enum RoPEFrequencies {
    public static func inverse(headDim: Int, theta: Float, scaling: RoPEScaling = .none) -> [Float] {
        var inv = (0..<headDim / 2).map { i in Float(1) / powf(theta, Float(2 * i) / Float(headDim)) }
        if case let .llama3(factor, low, high, original) = scaling {
            let lowWavelen = Float(original) / low, highWavelen = Float(original) / high
            inv = inv.map { f in
                let wavelen = Float(2 * Double.pi) / f
                if wavelen < highWavelen { return f }                   // high frequency: kept
                if wavelen > lowWavelen { return f / factor }           // low frequency: scaled
                let smooth = (Float(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv
    }
}

/// Rotary position embedding, half-split layout (transformers' `rotate_half`, not llama.cpp's
/// interleaved pairs), on x [..., seq, heads·head_dim]: the pair (x[i], x[i + d/2]) of each head
/// is rotated by position·inv_freq[i]. Positions are `offset + s` for sequence index s, or, with
/// a second int32 operand [..., seq], read from it (a KV-cache decode step passes its position).
/// `inverse` rotates by the negative angle: that is the vjp (a rotation's transpose).
struct RoPEOp: OpDefinition {
    var heads: Int
    var headDim: Int
    var inverseFrequencies: [Float]
    var offset = 0
    var inverse = false
    var name: String { inverse ? "rope_grad" : "rope" }
    var mayReuseOperand: Int? { 0 }
    var jsonAttributes: [(key: String, value: JSONValue)] {
        [("heads", .int(heads)), ("head_dim", .int(headDim)), ("offset", .int(offset))]
    }
    var bracketAttributes: String { "[heads=\(heads), head_dim=\(headDim)\(offset != 0 ? ", offset=\(offset)" : "")]" }

    func resultType(_ operands: [ValueType], at site: OpSite) throws -> ValueType {
        guard operands.count == 1 || operands.count == 2 else { throw site.invalid("expects 1 or 2 operands (x, positions?), got \(operands.count)") }
        let x = try site.f32(0, "input")
        guard headDim > 0, headDim % 2 == 0, headDim <= 1024, heads > 0, inverseFrequencies.count == headDim / 2 else {
            throw site.invalid("head_dim must be even and at most 1024 with head_dim/2 frequencies, got head_dim \(headDim), \(inverseFrequencies.count) frequencies")
        }
        guard x.count >= 2, site.same(x.last!, heads * headDim) else {
            throw site.mismatch("input [..., seq, heads·head_dim]", expected: [heads * headDim], actual: x)
        }
        if operands.count == 2 {
            guard operands[1].element == .int32, site.same(operands[1].shape, Array(x.dropLast())) else {
                throw site.mismatch("positions (int32, the input's shape without its last dimension)", expected: Array(x.dropLast()), actual: operands[1].shape)
            }
        }
        return ValueType(shape: x, element: .float32)
    }

    func lower(_ input: LoweringInput) -> LoweredStep? {
        let shape = input.node.type.shape
        let kernel = RoPEKernel(rows: input.count / shape.last!, seq: shape[shape.count - 2], heads: heads, headDim: headDim,
                                inverseFrequencies: inverseFrequencies, offset: offset, inverse: inverse,
                                hasPositions: input.operands.count == 2)
        return input.elementwise(kernel, flopsPerElement: 3)
    }

    func vjp(_ node: Node, cotangent: Int, into d: inout Differentiator) throws -> [Int?] {
        var op = self
        op.inverse.toggle()
        return [try d.emit(Op(op), [cotangent] + node.operands.dropFirst(), label: "grad.\(node.label)"), nil]
    }
}

struct RoPEKernel: StepKernel {
    var rows: Int, seq: Int, heads: Int, headDim: Int
    var inverseFrequencies: [Float]
    var offset: Int
    var inverse: Bool
    var hasPositions: Bool
    var name: String { inverse ? "rope_grad" : "rope" }
    func workSplit(threads: Int) -> String {
        rows * heads * headDim > 32768 ? "\(rows) positions over \(threads) \(threadWord(threads))" : "\(rows) positions, 1 thread"
    }
    func run(_ io: KernelIO) {
        inverseFrequencies.withUnsafeBufferPointer { f in
            cq_rope(io.f32(0), io.out, Int64(rows), Int64(seq), Int64(heads), Int64(headDim), f.baseAddress,
                    hasPositions ? io.int32(1) : nil, Int64(offset), inverse ? 1 : 0, io.threads)
        }
    }
}

extension Graph {
    /// RoPE (half-split, transformers' layout) over x [..., seq, heads·headDim]; positions are
    /// `offset + s`, or the int32 `positions` [..., seq] when given.
    public func rope(_ x: Value, heads: Int, headDim: Int, theta: Float, scaling: RoPEScaling = .none,
                     offset: Int = 0, positions: Value? = nil, label: String = "") throws -> Value {
        let op = RoPEOp(heads: heads, headDim: headDim,
                        inverseFrequencies: RoPEFrequencies.inverse(headDim: headDim, theta: theta, scaling: scaling), offset: offset)
        return try record(Op(op), [x] + (positions.map { [$0] } ?? []), label)
    }
}
