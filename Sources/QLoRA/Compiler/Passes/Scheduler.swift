/// Pass 6: turns the planned IR into the ordered steps of an immutable `ExecutablePlan`, each
/// with its kernel, buffers and cost (FLOPs, bytes moved).
enum Scheduler {
    static func run(_ g: IRGraph, memory: MemoryPlan, options: CompileOptions,
                    decisions: [ModeLowering.Decision]) -> ExecutablePlan {
        var steps: [Step] = []
        for n in g.nodes where !n.op.isLeaf {
            if case .reshape = n.op { continue }
            let operands = n.operands.map { memory.refs[$0]! }
            let count = n.type.count
            let shapeOf = { (i: Int) in g.nodes[n.operands[i]].type.shape }
            var kernel: Kernel
            var flops = count, bytes = 4 * count * (n.operands.count + 1), fused: [String] = []
            switch n.op {
            case .dequantize:
                kernel = .dequantize
                bytes = 4 * count + (g.nodes[n.operands[0]].op.storage?.memoryBytes ?? 0)
            case .matmul:
                let x = shapeOf(0), w = shapeOf(1)
                let m = x.dropLast().reduce(1, *)
                kernel = .matmul(m: m, n: w[0], k: w[1])
                flops = 2 * m * w[0] * w[1]
                bytes = 4 * (m * w[1] + w[0] * w[1] + m * w[0])
            case let .fusedLinear(a):
                let x = shapeOf(0), w = g.nodes[n.operands[1]]
                let m = x.dropLast().reduce(1, *), nOut = w.type.shape[0], k = w.type.shape[1]
                let r = a.hasLora ? shapeOf(2)[0] : 0
                let weightBytes = w.type.element == .quant4 ? (w.op.storage?.memoryBytes ?? 0) : 4 * nOut * k
                kernel = w.type.element == .quant4
                    ? .fusedLinear(m: m, n: nOut, k: k, rank: r, scaling: a.scaling, hasBias: a.hasBias,
                                   bf16: options.computeType == .bfloat16)
                    : .denseLinear(m: m, n: nOut, k: k, rank: r, scaling: a.scaling, hasBias: a.hasBias)
                flops = 2 * m * nOut * k + 2 * m * r * (k + nOut)
                bytes = weightBytes + 4 * (m * k + m * nOut + r * (k + nOut) + (a.hasBias ? nOut : 0))
                // A cached weight is already f32: the step no longer dequantizes.
                fused = w.type.element == .quant4 ? a.fusedOps : a.fusedOps.filter { $0 != "dequantize" }
            case .add:
                let b = shapeOf(1)
                // A 1-D rhs against a higher-rank lhs is a row broadcast (shape inference checked it).
                kernel = b.count == 1 && n.type.shape.count > 1 ? .addRow(rows: count / b[0], width: b[0]) : .add(count: count)
            case .mul: kernel = .mul(count: count)
            case let .scale(s): kernel = .scale(s, count: count)
            case .silu: kernel = .silu(count: count); flops = 4 * count
            case .gelu: kernel = .gelu(count: count); flops = 8 * count
            case .relu: kernel = .relu(count: count)
            case .siluMul: kernel = .siluMul(count: count); flops = 5 * count; fused = ["silu", "mul"]
            case let .rmsNorm(eps):
                let width = n.type.shape.last!
                kernel = .rmsNorm(eps: eps, rows: count / width, width: width); flops = 4 * count
            case .input, .parameter, .quantizedWeight, .cachedWeight, .reshape:
                continue
            }
            steps.append(Step(kernel: kernel, operands: operands, output: memory.refs[n.id]!, node: n.id, label: n.label,
                              flops: flops, bytesMoved: bytes,
                              scratchBytes: memory.scratchPerNode[n.id], fusedOps: fused,
                              workSplit: workSplit(kernel, threads: options.threads)))
        }
        let inputs = g.inputs.map { input in
            ExecutablePlan.Binding(name: input.name, shape: g.nodes[input.node].type.shape, ref: memory.refs[input.node]!)
        }
        let outputs = g.outputs.map { output in
            ExecutablePlan.Binding(name: output.name, shape: g.nodes[output.node].type.shape, ref: memory.refs[output.node]!)
        }
        return ExecutablePlan(ir: g, steps: steps, inputs: inputs, outputs: outputs, memory: memory, options: options,
                              decisions: decisions)
    }
}

/// What each thread of a step computes: rows of the weight (output features) for the linear
/// kernels, with the reduction over K whole in one thread; contiguous element ranges otherwise.
private func workSplit(_ kernel: Kernel, threads: Int) -> String {
    switch kernel {
    case let .fusedLinear(m, n, _, _, _, _, _), let .denseLinear(m, n, _, _, _, _), let .matmul(m, n, _):
        return "\(n) output features × \(m) rows, features split over up to \(threads) thread\(threads == 1 ? "" : "s"), K whole per output"
    case .dequantize:
        return "weight blocks over \(threads) thread\(threads == 1 ? "" : "s")"
    case let .rmsNorm(_, rows, _):
        return "\(rows) rows over \(threads) thread\(threads == 1 ? "" : "s")"
    case let .add(count), let .mul(count), let .scale(_, count), let .silu(count), let .gelu(count), let .relu(count),
         let .siluMul(count):
        return count > 32768 ? "\(count) elements over \(threads) thread\(threads == 1 ? "" : "s")" : "\(count) elements, 1 thread"
    case let .addRow(rows, width):
        return rows * width > 32768 ? "\(rows) rows over \(threads) thread\(threads == 1 ? "" : "s")" : "\(rows * width) elements, 1 thread"
    }
}

extension Op {
    /// The weight storage of a 4-bit or cached weight leaf.
    var storage: QuantizedWeightStorage? {
        switch self {
        case let .quantizedWeight(w), let .cachedWeight(w): return w
        default: return nil
        }
    }
}
