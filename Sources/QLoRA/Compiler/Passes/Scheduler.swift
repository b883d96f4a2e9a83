/// Pass 6: turns the planned IR into the ordered steps of an immutable `ExecutablePlan`: each
/// computing node's definition lowers itself to a kernel with its cost (`OpDefinition.lower`);
/// the memory plan supplies the buffers.
enum Scheduler {
    /// Every node's lowered step (nil for leaves and aliases), computed once: the memory planner
    /// needs the scratch sizes, the scheduler the kernels.
    static func lower(_ g: IRGraph, options: CompileOptions) -> [LoweredStep?] {
        g.nodes.map { n in
            n.op.definition.lower(LoweringInput(node: n, operands: n.operands.map { g.nodes[$0] }, options: options))
        }
    }

    static func run(_ g: IRGraph, lowered: [LoweredStep?], memory: MemoryPlan, options: CompileOptions,
                    decisions: [ModeLowering.Decision], checkpointing: CheckpointingReport? = nil) -> ExecutablePlan {
        var steps: [Step] = []
        for n in g.nodes {
            guard let l = lowered[n.id] else { continue }
            steps.append(Step(kernel: l.kernel, operands: n.operands.map { memory.refs[$0]! }, output: memory.refs[n.id]!,
                              resultOffsets: n.resultOffsets, node: n.id,
                              label: n.label, flops: l.flops, bytesMoved: l.bytesMoved, scratchBytes: l.scratchBytes,
                              fusedOps: l.fusedOps ?? n.op.definition.fusedOps, workSplit: l.kernel.workSplit(threads: options.threads)))
        }
        let inputs = g.inputs.map { input in
            ExecutablePlan.Binding(name: input.name, shape: g.nodes[input.node].type.shape, element: g.nodes[input.node].type.element,
                                   ref: memory.refs[input.node]!)
        }
        let outputs = g.outputs.map { output in
            ExecutablePlan.Binding(name: output.name, shape: g.nodes[output.node].type.shape, element: g.nodes[output.node].type.element,
                                   ref: memory.refs[output.node]!)
        }
        return ExecutablePlan(ir: g, steps: steps, inputs: inputs, outputs: outputs, memory: memory, options: options,
                              decisions: decisions, checkpointing: checkpointing)
    }
}
