/// The memory one run of a plan works in: the arena, allocated once and reused by every run.
public final class ExecutionContext: @unchecked Sendable {
    let arena: AlignedBuffer

    init(arenaBytes: Int) {
        arena = AlignedBuffer(byteCount: arenaBytes)
    }

    public var arenaBytes: Int { arena.byteCount }
}
