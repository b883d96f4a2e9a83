import CQLoRAKernels

/// The data-parallel gradient all-reduce in a fixed order, so that N ranks end with the bits one
/// process gets from the same micro-batches with N× the gradient accumulation.
///
/// One process folds the weighted micro-batch gradients left to right: acc = w₀g₀, acc += w₁g₁, …
/// (`cq_accumulate_scaled`). Rank r holds the micro-batches r·k ..< (r+1)·k of that sequence, so
/// the same fold is a chain: rank 0 folds its own and sends the partial sum to rank 1, which adds
/// its (already weighted) gradients in order and passes it on; the last rank holds the full sum
/// and broadcasts it. The buffer travels in chunks, so the chain is pipelined: every link carries
/// the buffer once, like a reduce, and the ranks work on different chunks at the same time.
public enum OrderedGradientSum {
    /// Floats per message (1 MiB): small enough to pipeline, large enough to amortise latency.
    public static let chunk = 1 << 18

    /// On rank 0 `sum` holds the fold of its micro-batches; on rank r > 0, `weighted` holds its
    /// micro-batches' wⱼ·gⱼ in order (and `sum` is overwritten). Afterwards every rank's `sum`
    /// is the fold over all ranks' micro-batches in rank order.
    public static func reduce(_ sum: inout [Float], weighted: [[Float]], collective: any Collective, threads: Int) throws {
        guard collective.size > 1 else { return }
        let count = sum.count
        try withPointers(weighted[...], []) { w in
            try sum.withUnsafeMutableBufferPointer { s in
                try chain(s.baseAddress!, weighted: w, range: 0..<count, collective: collective, threads: threads)
                try collective.broadcast(s, root: collective.size - 1)
            }
        }
    }

    private static func withPointers(_ rest: ArraySlice<[Float]>, _ done: [UnsafePointer<Float>],
                                     _ body: ([UnsafePointer<Float>]) throws -> Void) throws {
        guard let first = rest.first else { return try body(done) }
        try first.withUnsafeBufferPointer { try withPointers(rest.dropFirst(), done + [$0.baseAddress!], body) }
    }

    /// The chain over `range` of the flat buffers (the broadcast is the caller's): rank r > 0
    /// receives the partial sum of `range` from rank r − 1 into `sum`, adds its `weighted`
    /// products in order, and (except the last rank) sends it on, chunk by chunk.
    public static func chain(_ sum: UnsafeMutablePointer<Float>, weighted: [UnsafePointer<Float>], range: Range<Int>,
                             collective: any Collective, threads: Int) throws {
        let n = collective.size, rank = collective.rank
        var offset = range.lowerBound
        while offset < range.upperBound {
            let len = min(chunk, range.upperBound - offset)
            let part = UnsafeMutableBufferPointer(start: sum + offset, count: len)
            if rank > 0 {
                try collective.receive(part, from: rank - 1)
                for w in weighted {
                    cq_accumulate_scaled(part.baseAddress!, w + offset, 1, 0, Int64(len), Int32(threads))
                }
            }
            if rank < n - 1 { try collective.send(UnsafeBufferPointer(part), to: rank + 1) }
            offset += len
        }
    }
}
