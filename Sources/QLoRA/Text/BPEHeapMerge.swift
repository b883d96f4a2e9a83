/// The merge loop for long pieces (a CJK paragraph or a base64 blob is one `\p{L}+` / `[^\s...]+`
/// piece): a min-heap of (rank, position) over a linked list of symbols, O(n log n) where the
/// rescan of `BPEModel.merge` is O(n²). Same result: the lowest rank first, leftmost among equals
/// (positions keep their order in the list); stale heap entries are skipped when popped.
extension BPEModel {
    static let heapMergeThreshold = 48

    func mergeWithHeap(_ sym: inout [UInt32]) {
        let n = sym.count
        if n < 2 { return }
        var next = [Int32](repeating: -1, count: n)
        var prev = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for k in 0..<n { next[k] = k + 1 < n ? Int32(k + 1) : -1; prev[k] = Int32(k - 1) }
        var heap = MergeHeap(capacity: n)   // rank << 32 | position
        for k in 0..<(n - 1) {
            let v = merges.lookup(sym[k], sym[k + 1])
            if v != UInt64.max { heap.push((v >> 32) << 32 | UInt64(k)) }
        }
        while !heap.isEmpty {
            let top = heap.pop()
            let rank = top >> 32
            let at = Int(top & 0xFFFF_FFFF)
            guard alive[at], next[at] >= 0 else { continue }
            let right = Int(next[at])
            let v = merges.lookup(sym[at], sym[right])
            guard v != UInt64.max, v >> 32 == rank else { continue }  // stale: the pair changed
            sym[at] = UInt32(truncatingIfNeeded: v)
            alive[right] = false
            next[at] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(at) }
            if prev[at] >= 0 {
                let p = Int(prev[at])
                let w = merges.lookup(sym[p], sym[at])
                if w != UInt64.max { heap.push((w >> 32) << 32 | UInt64(p)) }
            }
            if next[at] >= 0 {
                let w = merges.lookup(sym[at], sym[Int(next[at])])
                if w != UInt64.max { heap.push((w >> 32) << 32 | UInt64(at)) }
            }
        }
        var out: [UInt32] = []
        out.reserveCapacity(n)
        var k = 0
        while k >= 0 { out.append(sym[k]); k = Int(next[k]) }
        sym = out
    }
}

/// A binary min-heap of UInt64 (rank << 32 | position) for `mergeWithHeap`: a struct with
/// mutating methods (no captured closure state), sifting a hole instead of swapping.
struct MergeHeap {
    private var a: [UInt64] = []

    init(capacity: Int) { a.reserveCapacity(capacity) }

    var isEmpty: Bool { a.isEmpty }

    @inline(__always)
    mutating func push(_ x: UInt64) {
        a.append(x)
        a.withUnsafeMutableBufferPointer { h in
            var c = h.count - 1
            while c > 0 {
                let p = (c - 1) >> 1
                if h[p] <= x { break }
                h[c] = h[p]; c = p
            }
            h[c] = x
        }
    }

    @inline(__always)
    mutating func pop() -> UInt64 {
        let top = a[0]
        let last = a.removeLast()
        if a.isEmpty { return top }
        a.withUnsafeMutableBufferPointer { h in
            let n = h.count
            var p = 0
            while true {
                let l = 2 * p + 1
                if l >= n { break }
                var m = l
                if l + 1 < n && h[l + 1] < h[l] { m = l + 1 }
                if h[m] >= last { break }
                h[p] = h[m]; p = m
            }
            h[p] = last
        }
        return top
    }
}
