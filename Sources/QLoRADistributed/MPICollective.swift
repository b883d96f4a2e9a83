import CMPI
import Foundation
import QLoRA

/// The `Collective` of an `mpirun` job on Open MPI's MPI_COMM_WORLD.
///
/// `qlora` starts MPI only when a launcher started it (`MPICollective.launched`), so the same
/// binary trains in one process without `mpirun`. Every call blocks; MPI's default error handler
/// (MPI_ERRORS_ARE_FATAL) ends the whole job on a transport failure, and `mpirun` ends every rank
/// when one exits without finalizing (a crash, SIGKILL, `abort`).
public final class MPICollective: Collective {
    public let rank: Int
    public let size: Int
    private let world = cmpi_comm_world()
    private var finished = false
    /// MPI_Init_thread provided MPI_THREAD_SERIALIZED or more: any thread may call, one at a time.
    public let allowsCallsFromAnotherThread: Bool

    /// True when this process was started by mpirun / a PMIx launcher (Open MPI sets these).
    public static func launched(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// MPI_Init_thread asking for MPI_THREAD_SERIALIZED (the overlapped gradient reduction calls
    /// from a communication thread), then this process's rank and the world's size. What the
    /// library provides is checked, not assumed. `QLORA_MPI_THREAD_SINGLE=1` in the environment
    /// asks for MPI_THREAD_SINGLE instead, as with a library without thread support (tests use it).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        var provided = cmpi_thread_single()
        if initialized == 0 {
            let wanted = environment["QLORA_MPI_THREAD_SINGLE"] == "1" ? cmpi_thread_single() : cmpi_thread_serialized()
            guard MPI_Init_thread(nil, nil, wanted, &provided) == MPI_SUCCESS else { throw QLoraError.invalidArgument("MPI_Init_thread failed") }
        } else {
            MPI_Query_thread(&provided)
        }
        allowsCallsFromAnotherThread = provided >= cmpi_thread_serialized()
        var r: Int32 = 0, n: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &n)
        rank = Int(r)
        size = Int(n)
    }

    public func allGather(_ local: [Double]) throws -> [Double] {
        var all = [Double](repeating: 0, count: local.count * size)
        let rc = local.withUnsafeBufferPointer { l in
            all.withUnsafeMutableBufferPointer { a in
                MPI_Allgather(l.baseAddress, Int32(local.count), cmpi_double(), a.baseAddress, Int32(local.count), cmpi_double(), world)
            }
        }
        try check(rc, "MPI_Allgather")
        return all
    }

    // The transfers are nonblocking calls completed by `wait`. On the main thread (nothing else
    // to do: the reduction after the backward) it polls like Open MPI's blocking calls; on another
    // thread (the overlapped reduction's communication thread, while the backward runs on the
    // same cores) it sleeps between tests, so that waiting for a peer takes no core from the
    // compute threads.

    public func send(_ buffer: UnsafeBufferPointer<Float>, to peer: Int) throws {
        for (start, count) in Self.pieces(buffer.count) {
            var request: MPI_Request?
            try check(MPI_Isend(buffer.baseAddress! + start, count, cmpi_float(), Int32(peer), 0, world, &request), "MPI_Isend to rank \(peer)")
            try wait(&request, "MPI_Isend to rank \(peer)")
        }
    }

    public func receive(_ buffer: UnsafeMutableBufferPointer<Float>, from peer: Int) throws {
        for (start, count) in Self.pieces(buffer.count) {
            var request: MPI_Request?
            try check(MPI_Irecv(buffer.baseAddress! + start, count, cmpi_float(), Int32(peer), 0, world, &request), "MPI_Irecv from rank \(peer)")
            try wait(&request, "MPI_Irecv from rank \(peer)")
        }
    }

    public func broadcast(_ buffer: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        for (start, count) in Self.pieces(buffer.count) {
            var request: MPI_Request?
            try check(MPI_Ibcast(buffer.baseAddress! + start, count, cmpi_float(), Int32(root), world, &request), "MPI_Ibcast")
            try wait(&request, "MPI_Ibcast")
        }
    }

    /// Completes `request`: on the main thread MPI_Wait; elsewhere a few quick tests, then tests
    /// with sleeps growing from 20 µs to 0.5 ms.
    private func wait(_ request: inout MPI_Request?, _ what: String) throws {
        if Thread.isMainThread { return try check(MPI_Wait(&request, cmpi_status_ignore()), what) }
        var done: Int32 = 0, tests = 0, pause: UInt32 = 20
        while true {
            try check(MPI_Test(&request, &done, cmpi_status_ignore()), what)
            if done != 0 { return }
            tests += 1
            if tests > 64 {
                usleep(pause)
                pause = min(pause * 2, 500)
            }
        }
    }

    /// MPI_Allreduce (sum) in place: Open MPI picks the algorithm and so the summation order
    /// (benchmarks compare it with `OrderedGradientSum`; training does not use it).
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        for (start, count) in Self.pieces(buffer.count) {
            try check(MPI_Allreduce(cmpi_in_place(), buffer.baseAddress! + start, count, cmpi_float(), cmpi_sum(), world), "MPI_Allreduce")
        }
    }

    public func barrier() throws { try check(MPI_Barrier(world), "MPI_Barrier") }

    /// MPI_Finalize (after a barrier, so no rank leaves while another still sends).
    public func finish() throws {
        guard !finished else { return }
        try barrier()
        finished = true
        MPI_Finalize()
    }

    /// Ends every rank of the job with `code` (after this rank printed why).
    public func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }

    /// MPI counts are Int32: longer buffers go in pieces.
    private static func pieces(_ n: Int) -> [(Int, Int32)] {
        let most = Int(Int32.max)
        return stride(from: 0, to: n, by: most).map { ($0, Int32(min(most, n - $0))) }
    }

    private func check(_ rc: Int32, _ what: String) throws {
        guard rc == MPI_SUCCESS else { throw QLoraError.invalidArgument("\(what) failed (MPI error \(rc)) on rank \(rank) of \(size)") }
    }
}
