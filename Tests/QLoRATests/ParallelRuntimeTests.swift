import XCTest
import CQLoRAKernels
@testable import QLoRA

/// The kernels' parallel regions run on libomp's thread team although nothing is compiled with
/// -fopenmp (parallel.c calls GOMP_parallel), and the default thread count honours OMP_NUM_THREADS.
final class ParallelRuntimeTests: XCTestCase {
    func testRegionsRunOnTheRequestedTeam() {
        XCTAssertEqual(cq_parallel_team_size(1), 1)
        XCTAssertEqual(cq_parallel_team_size(2), 2)
        XCTAssertEqual(cq_parallel_team_size(3), 3, "libomp oversubscribes when asked, as OpenMP's num_threads does")
        // The pool is reused: many regions in a row keep working.
        for _ in 0..<200 { XCTAssertEqual(cq_parallel_team_size(2), 2) }
    }

    func testDefaultThreadsFollowsOMPNumThreads() {
        let saved = ProcessInfo.processInfo.environment["OMP_NUM_THREADS"]
        defer { if let saved { setenv("OMP_NUM_THREADS", saved, 1) } else { unsetenv("OMP_NUM_THREADS") } }
        setenv("OMP_NUM_THREADS", "3", 1)
        XCTAssertEqual(Runtime.defaultThreads, 3)
        setenv("OMP_NUM_THREADS", "5,2", 1)
        XCTAssertEqual(Runtime.defaultThreads, 5)
        setenv("OMP_NUM_THREADS", "0", 1)
        XCTAssertEqual(Runtime.defaultThreads, max(1, ProcessInfo.processInfo.activeProcessorCount))
        unsetenv("OMP_NUM_THREADS")
        XCTAssertEqual(Runtime.defaultThreads, max(1, ProcessInfo.processInfo.activeProcessorCount))
    }
}
