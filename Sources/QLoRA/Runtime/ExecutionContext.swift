import Foundation

/// The memory one run of a plan works in: the arena, allocated once and reused by every run, and
/// the slots the executor resolves a step's operand pointers into (so steps allocate nothing).
public final class ExecutionContext: @unchecked Sendable {
    /// The most operands one step may have (the fused linear has five).
    static let maxOperands = 16

    let arena: AlignedBuffer
    let operandSlots = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: ExecutionContext.maxOperands)

    init(arenaBytes: Int) {
        arena = AlignedBuffer(byteCount: arenaBytes)
    }

    deinit { operandSlots.deallocate() }

    /// Held while a run uses this context: a second concurrent run is refused, not raced.
    private let inUse = NSLock()
    func claim() -> Bool { inUse.try() }
    func release() { inUse.unlock() }

    public var arenaBytes: Int { arena.byteCount }
}
