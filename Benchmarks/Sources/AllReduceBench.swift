import Foundation
import QLoRA
import QLoRADistributed

/// `mpirun -np N qlora-bench --allreduce [--floats 4884480,39976960] [--runs 5]`: the time of one
/// gradient all-reduce of each size over the job's ranks: the trainer's fixed-order sum
/// (`OrderedGradientSum`: a pipelined chain + broadcast) and Open MPI's MPI_Allreduce (its own
/// algorithm and summation order) for comparison. Medians over --runs after one warm-up; rank 0 prints.
enum AllReduceBench {
    /// LoRA r = 16 on all 7 projections: SmolLM2-135M (30 layers, 576 / 1536, 3 KV heads of 64)
    /// and a Llama-2-7B shape (32 layers, 4096 / 11008, MHA).
    static let defaultSizes = [4_884_480, 39_976_960]

    static func run(sizes: [Int], runs: Int) throws {
        let mpi = try MPICollective()
        defer { try? mpi.finish() }
        if mpi.rank == 0 { print("all-reduce over \(mpi.size) rank\(mpi.size == 1 ? "" : "s") (median of \(runs), after a warm-up)") }
        for n in sizes {
            var sum = [Float](repeating: Float(mpi.rank + 1), count: n)
            let weighted = mpi.rank == 0 ? [] : [[Float](repeating: 0.5, count: n)]
            func time(_ body: () throws -> Void) throws -> Double {
                var seconds: [Double] = []
                for i in 0...runs {
                    try mpi.barrier()
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    try body()
                    try mpi.barrier()
                    if i > 0 { seconds.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9) }
                }
                return seconds.sorted()[seconds.count / 2]
            }
            let ordered = try time { try OrderedGradientSum.reduce(&sum, weighted: weighted, collective: mpi, threads: 1) }
            let library = try time { try sum.withUnsafeMutableBufferPointer { try mpi.allReduceSum($0) } }
            if mpi.rank == 0 {
                let mb = Double(n * 4) / 1e6
                print(String(format: "%10d floats (%7.1f MB): ordered chain+bcast %8.2f ms (%6.2f GB/s of buffer)   MPI_Allreduce %8.2f ms",
                             n, mb, ordered * 1e3, mb / 1e3 / ordered, library * 1e3))
            }
        }
    }
}
