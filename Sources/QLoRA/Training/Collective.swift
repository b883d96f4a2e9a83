import Foundation

/// The ranks of a data-parallel training run and the few collective operations the `Trainer`
/// needs from them. The library only declares it (and the one-process identity below), so it
/// builds and runs without MPI; the `qlora` executable plugs in Open MPI (`QLoRADistributed`).
///
/// Every rank calls the same operations in the same order (they block until all took part).
public protocol Collective: AnyObject {
    /// This process's rank, 0..<size.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }
    /// Every rank's `local` values (the same count on each), concatenated in rank order.
    func allGather(_ local: [Double]) throws -> [Double]
    /// Sends `buffer` to `rank` (matched by a `receive` there).
    func send(_ buffer: UnsafeBufferPointer<Float>, to rank: Int) throws
    /// Receives `buffer.count` floats sent by `rank`.
    func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from rank: Int) throws
    /// `root`'s buffer into every rank's.
    func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws
    func barrier() throws
    /// Whether a thread other than the caller's may make these calls (one call at a time across
    /// threads: MPI_THREAD_SERIALIZED or more). The overlapped reduction needs it; without it the
    /// trainer reduces after the backward.
    var allowsCallsFromAnotherThread: Bool { get }
}

extension Collective {
    public var allowsCallsFromAnotherThread: Bool { false }
}

/// One process: rank 0 of 1. Gathering returns the local values, broadcast and barrier do
/// nothing, and there is no peer to send to.
public final class SingleProcess: Collective {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allGather(_ local: [Double]) throws -> [Double] { local }
    public func send(_ buffer: UnsafeBufferPointer<Float>, to rank: Int) throws {
        throw QLoraError.invalidArgument("a single process has no rank \(rank) to send to")
    }
    public func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from rank: Int) throws {
        throw QLoraError.invalidArgument("a single process has no rank \(rank) to receive from")
    }
    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {}
    public func barrier() throws {}
}

/// Thrown on the ranks that stop because of an error another rank (`reporter`) reports, so that
/// a job prints one message: the caller lets `reporter` print and end the job (MPI_Abort).
public struct RankStopped: Error, CustomStringConvertible {
    public let reporter: Int
    public init(reporter: Int) { self.reporter = reporter }
    public var description: String { "stopped: rank \(reporter) reports why" }
}
