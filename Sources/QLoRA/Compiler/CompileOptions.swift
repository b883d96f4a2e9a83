/// Where a 4-bit weight is turned into f32.
public enum ExecutionMode: String, Sendable, Codable, CaseIterable {
    /// Dequantize tile by tile inside the fused kernel; memory-optimal; the training mode.
    case onTheFly = "on-the-fly"
    /// Dequantize once at compile time into a persistent f32 copy, multiplied by the library's
    /// dense kernel (`cq_dense_linear`; not BLAS, whose bits change with the thread count).
    case cached
    /// Choose per linear node from the cost model (`CostModel`).
    case auto
}

/// How `Graph.compile` builds a plan.
public struct CompileOptions: Sendable, Equatable {
    public var mode: ExecutionMode
    /// Threads the kernels use; results are bitwise identical for any count.
    public var threads: Int
    /// Fuse dequantize→matmul→LoRA→add→bias into one kernel; `false` gives the unfused reference plan.
    public var fusion: Bool
    /// Arithmetic of the fused on-the-fly kernels. `.bfloat16` rounds activations and decoded
    /// weights to bf16 and accumulates in f32 (~1e-3 relative error) on CPUs with AVX512-BF16,
    /// where it is faster; elsewhere, and for shapes the bf16 kernels do not cover, f32 runs.
    public var computeType: ComputeType
    /// Training plans: the most bytes the plan may allocate (`ExecutablePlan.plannedPeakBytes`:
    /// arena + persistent). When the plan keeping every activation for the backward needs more,
    /// the compiler recomputes segments of the forward in the backward instead (gradient
    /// checkpointing, largest savings first) until it fits; below what recomputing every segment
    /// reaches, `compile` throws, naming that minimum. nil: no bound.
    public var memoryBudget: Int?
    /// Training plans: recompute every checkpoint segment (transformers' `gradient_checkpointing`),
    /// whatever the budget.
    public var gradientCheckpointing: Bool
    /// Run the plan with denormal (subnormal, |v| < 1.2e-38) operands and results flushed to zero
    /// (x86 FTZ + DAZ, on every kernel thread; the caller's own mode is back when `run` returns).
    /// x86 computes with denormals in microcode, up to ~100x slower: a 7B-shaped QLoRA step whose
    /// q/k input gradients had underflowed took 197 s with them, 28.9 s without (docs/architecture.md,
    /// "Denormals"). `false`: IEEE gradual underflow, as PyTorch on CPU by default; results differ
    /// only where a value would have been below 1.2e-38 in magnitude. No effect off x86-64.
    public var flushDenormals: Bool
    /// The fusion passes around the rule-based fusion, one by one (tests turn one off to compare
    /// with the plan without it); only read when `fusion` is on.
    var fusionStages: FusionStages = .all

    public init(mode: ExecutionMode = .onTheFly, threads: Int = Runtime.defaultThreads, fusion: Bool = true,
                computeType: ComputeType = .float32, memoryBudget: Int? = nil, gradientCheckpointing: Bool = false,
                flushDenormals: Bool = true) {
        self.mode = mode
        self.threads = threads
        self.fusion = fusion
        self.computeType = computeType
        self.memoryBudget = memoryBudget
        self.gradientCheckpointing = gradientCheckpointing
        self.flushDenormals = flushDenormals
    }
}
