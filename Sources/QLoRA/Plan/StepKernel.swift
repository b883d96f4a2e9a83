import CQLoRAKernels

/// A kernel call with the sizes it needs, made by an op definition's `lower`. The executor only
/// resolves buffers to pointers and calls `run`, so it never needs to know which op it runs.
protocol StepKernel: Sendable {
    /// The name plans and `inspect` show, e.g. "fused_qlora_linear(on-the-fly)".
    var name: String { get }
    /// How the kernel divides the work among threads (always over independent outputs, so the
    /// result does not depend on the thread count).
    func workSplit(threads: Int) -> String
    /// Runs the kernel; throws when the data is outside what the kernel accepts (an id outside a table).
    func run(_ io: KernelIO) throws
}

/// The pointers of one step's operands, result and scratch, resolved by the executor.
struct KernelIO {
    let operands: UnsafeBufferPointer<UnsafeMutableRawPointer>
    let output: UnsafeMutableRawPointer
    let scratch: UnsafeMutableRawPointer
    let threads: Int32
    /// Where each result starts relative to `output` (ops with several results; [0] otherwise).
    let resultOffsets: [Int]

    func f32(_ i: Int) -> UnsafePointer<Float> { UnsafePointer(operands[i].assumingMemoryBound(to: Float.self)) }
    /// Operand `i` when the step has it (optional trailing operands such as a bias).
    func f32IfPresent(_ i: Int) -> UnsafePointer<Float>? { i < operands.count ? f32(i) : nil }
    func int32(_ i: Int) -> UnsafePointer<Int32> { UnsafePointer(operands[i].assumingMemoryBound(to: Int32.self)) }
    /// A bfloat16 operand as its raw 16-bit patterns.
    func bfloat16(_ i: Int) -> UnsafePointer<UInt16> { UnsafePointer(operands[i].assumingMemoryBound(to: UInt16.self)) }
    /// A 4-bit weight operand's kernel view.
    func weight(_ i: Int) -> UnsafePointer<cq_qweight> { UnsafePointer(operands[i].assumingMemoryBound(to: cq_qweight.self)) }
    var out: UnsafeMutablePointer<Float> { output.assumingMemoryBound(to: Float.self) }
    /// Result `k` of a step with several results, as f32.
    func result(_ k: Int) -> UnsafeMutablePointer<Float> { (output + resultOffsets[k]).assumingMemoryBound(to: Float.self) }
}

/// What `lower` gives the scheduler: the kernel and its cost.
struct LoweredStep {
    var kernel: any StepKernel
    /// Floating-point operations (multiply-add = 2).
    var flops: Int
    /// Bytes read and written.
    var bytesMoved: Int
    /// Kernel scratch the step needs (one shared region, sized for the hungriest step).
    var scratchBytes: Int = 0
    /// The IR ops the step replaces, when they differ from the definition's `fusedOps`.
    var fusedOps: [String]? = nil
}

/// What `lower` sees of a node: its type, its operands' nodes and the compile options.
struct LoweringInput {
    let node: Node
    let operands: [Node]
    let options: CompileOptions

    var count: Int { node.type.count }
    var threads: Int { options.threads }
    func shape(_ i: Int) -> [Int] { operands[i].type.shape }
    /// Rows of operand `i` seen as a matrix [rows, last dimension].
    func rows(_ i: Int) -> Int { operands[i].type.shape.dropLast().reduce(1, *) }
    /// The cost of an elementwise op: `flopsPerElement` per result element; every operand and the
    /// result read or written once.
    func elementwise(_ kernel: any StepKernel, flopsPerElement: Int = 1) -> LoweredStep {
        LoweredStep(kernel: kernel, flops: flopsPerElement * count, bytesMoved: 4 * count * (operands.count + 1))
    }
}

/// "N elements over T threads" for kernels that split contiguous ranges (one thread below 32 K
/// elements, where threading costs more than it saves).
func elementRangeSplit(_ count: Int, threads: Int) -> String {
    count > 32768 ? "\(count) elements over \(threads) \(threadWord(threads))" : "\(count) elements, 1 thread"
}

func threadWord(_ n: Int) -> String { n == 1 ? "thread" : "threads" }
