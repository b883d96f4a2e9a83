import Foundation
import CQLoRAKernels

/// The compiled, immutable form of a graph: ordered steps with their kernels and buffers, the
/// arena layout, and references to the persistent data (parameters, 4-bit and cached weights).
/// Safe to share between threads; each concurrent run needs its own `ExecutionContext`.
public final class ExecutablePlan: @unchecked Sendable {
    struct Binding: Sendable {
        var name: String
        var shape: [Int]
        var element: ElementType
        var ref: BufferRef
    }

    /// The optimized IR the plan was built from.
    let ir: IRGraph
    public let steps: [Step]
    let inputs: [Binding]
    let outputs: [Binding]
    let memory: MemoryPlan
    public let options: CompileOptions
    let decisions: [ModeLowering.Decision]
    /// Gradient checkpointing: which segments are recomputed, and the planned peak with and
    /// without (nil when the compile options asked for none).
    public let checkpointing: CheckpointingReport?
    /// Persistent f32 copies of the cached weights, made when the plan is built.
    let cachedBuffers: [AlignedBuffer]
    /// The kernel views of the 4-bit weights (their pointers stay valid while the storages live,
    /// and the plan holds the storages).
    let weightViews: UnsafeMutablePointer<cq_qweight>
    /// What a run holds: the lock domains of the parameters it reads (for reading) and of the
    /// states it updates (for writing), each domain once, in the one global order.
    let runLocks: LockSet
    private let defaultContext: ExecutionContext
    private let runLock = NSLock()

    init(ir: IRGraph, steps: [Step], inputs: [Binding], outputs: [Binding], memory: MemoryPlan, options: CompileOptions,
         decisions: [ModeLowering.Decision], checkpointing: CheckpointingReport? = nil) {
        self.ir = ir
        self.steps = steps
        self.inputs = inputs
        self.outputs = outputs
        self.memory = memory
        self.options = options
        self.decisions = decisions
        self.checkpointing = checkpointing
        cachedBuffers = memory.cachedWeights.map { $0.dequantized(threads: options.threads) }
        weightViews = .allocate(capacity: max(1, memory.weights.count))
        weightViews.initialize(from: memory.weights.map(\.kernelView), count: memory.weights.count)
        defaultContext = ExecutionContext(arenaBytes: memory.arenaBytes)
        runLocks = LockSet(reading: memory.parameters.map(\.lock), writing: memory.states.flatMap { $0.locks.entries.map(\.lock) })
    }

    deinit { weightViews.deallocate() }

    /// Input names and shapes the plan expects.
    public var inputShapes: [String: [Int]] { Dictionary(uniqueKeysWithValues: inputs.map { ($0.name, $0.shape) }) }
    /// Output names and shapes the plan returns.
    public var outputShapes: [String: [Int]] { Dictionary(uniqueKeysWithValues: outputs.map { ($0.name, $0.shape) }) }

    /// Bytes of the arena (inputs, intermediates, outputs, kernel scratch), allocated once per context.
    public var arenaBytes: Int { memory.arenaBytes }
    /// Bytes of the kernel scratch region inside the arena.
    public var scratchBytes: Int { memory.scratchBytes }
    /// Bytes the plan keeps outside the arena: 4-bit weights with statistics, parameters, cached f32 weights, state.
    public var persistentBytes: Int { memory.persistentBytes }
    /// Everything the plan allocates: the arena plus the persistent bytes. `CompileOptions.memoryBudget` bounds it.
    public var plannedPeakBytes: Int { arenaBytes + persistentBytes }
    /// What the arena values would need with no reuse at all (each value its own buffer: no shared
    /// gaps, no in-place steps).
    public var unsharedBufferBytes: Int { memory.unsharedBytes }

    /// A fresh context for running this plan concurrently with others.
    public func makeContext() -> ExecutionContext { ExecutionContext(arenaBytes: memory.arenaBytes) }

    /// Runs the plan on named inputs and returns the named outputs: f32 inputs in `feeds`, int32
    /// inputs (token ids, labels) in `ids`. Throws for an unknown or missing input, a wrong shape,
    /// a NaN/Inf input value, or an id a kernel cannot use. Runs sharing the plan's built-in
    /// context are serialised; pass `context:` (from `makeContext`) to run concurrently. A context
    /// already in use by another run, or one made for a plan with a smaller arena, is refused.
    public func run(_ feeds: [String: Tensor], ids: [String: IntTensor] = [:], context: ExecutionContext? = nil) throws -> [String: Tensor] {
        if let context {
            guard context.arenaBytes >= memory.arenaBytes else {
                throw QLoraError.invalidArgument("the ExecutionContext's arena has \(context.arenaBytes) bytes but this plan needs \(memory.arenaBytes): make contexts with this plan's makeContext()")
            }
            guard context.claim() else {
                throw QLoraError.invalidArgument("the ExecutionContext is already running a plan on another thread: give each concurrent run its own context (plan.makeContext())")
            }
            defer { context.release() }
            return try Executor.run(self, feeds, ids, context)
        }
        runLock.lock(); defer { runLock.unlock() }
        return try Executor.run(self, feeds, ids, defaultContext)
    }
}
