/// A byte-level BPE model: the vocabulary as byte strings, merges by rank, and the merge loop.
struct BPEModel: Sendable {
    /// Token id of each single byte (UInt32.max: the byte has no token).
    let byteToken: [UInt32]
    let merges: BPEMergeTable
    /// Vocabulary entries by their bytes (for `ignore_merges`).
    let vocabByBytes: [[UInt8]: UInt32]
    let ignoreMerges: Bool
    /// Emitted for a byte without a token; nil drops the byte (as Hugging Face does without unk).
    let unknownId: UInt32?
    let fuseUnknown: Bool

    /// Appends the tokens of the piece b[lo..<hi] to `out`.
    func encode(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, into out: inout [UInt32],
                scratch sym: inout [UInt32], ranks: inout [UInt64]) {
        if ignoreMerges, let id = vocabByBytes[Array(b[lo..<hi])] { out.append(id); return }
        sym.removeAll(keepingCapacity: true)
        var lastWasUnknown = false
        for i in lo..<hi {
            let t = byteToken[Int(b[i])]
            if t != UInt32.max { sym.append(t); lastWasUnknown = false; continue }
            guard let unk = unknownId else { continue }
            // An unknown byte stops merges across it: emit what came before on its own.
            if !(fuseUnknown && lastWasUnknown) {
                merge(&sym, &ranks)
                out.append(contentsOf: sym)
                sym.removeAll(keepingCapacity: true)
                out.append(unk)
            }
            lastWasUnknown = true
        }
        merge(&sym, &ranks)
        out.append(contentsOf: sym)
    }

    /// Applies merges to `sym` in rank order (leftmost first among equal ranks) until none applies.
    @inline(__always)
    func merge(_ sym: inout [UInt32], _ ranks: inout [UInt64]) {
        let n = sym.count
        if n < 2 { return }
        if n > BPEModel.heapMergeThreshold { mergeWithHeap(&sym) } else { mergeByScan(&sym, &ranks) }
    }

    /// The merge loop by rescanning the pair ranks: fastest for short pieces, O(n²).
    func mergeByScan(_ sym: inout [UInt32], _ ranks: inout [UInt64]) {
        let n = sym.count
        if n < 2 { return }
        ranks.removeAll(keepingCapacity: true)
        for k in 0..<(n - 1) { ranks.append(merges.lookup(sym[k], sym[k + 1])) }
        while true {
            var best = UInt64.max
            var at = -1
            for k in 0..<ranks.count where ranks[k] < best { best = ranks[k]; at = k }
            if at < 0 { return }
            sym[at] = UInt32(truncatingIfNeeded: best)
            sym.remove(at: at + 1)
            ranks.remove(at: at)
            if at < ranks.count { ranks[at] = merges.lookup(sym[at], sym[at + 1]) }
            if at > 0 { ranks[at - 1] = merges.lookup(sym[at - 1], sym[at]) }
        }
    }
}
