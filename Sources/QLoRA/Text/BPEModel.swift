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
    /// SentencePiece-style models (byte_fallback): the initial symbols are characters, looked up
    /// by their UTF-8 packed into a UInt32 (`packedCharacter`); nil for byte-level BPE.
    var charToken: [UInt32: UInt32]? = nil
    /// The `<0xXX>` token of each byte (UInt32.max: none), used for a character without a token.
    var byteFallback: [UInt32]? = nil

    /// Appends the tokens of the piece b[lo..<hi] to `out`.
    func encode(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, into out: inout [UInt32],
                scratch sym: inout [UInt32], ranks: inout [UInt64]) {
        if ignoreMerges, let id = vocabByBytes[Array(b[lo..<hi])] { out.append(id); return }
        if let chars = charToken { encodeCharacters(b, lo, hi, chars, into: &out, scratch: &sym, ranks: &ranks); return }
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

    /// As `tokenizers`' BPE with byte_fallback: one symbol per character (its token, else its
    /// bytes' `<0xXX>` tokens, else the unknown token, consecutive ones fused if fuse_unk), then merges.
    func encodeCharacters(_ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int, _ chars: [UInt32: UInt32],
                          into out: inout [UInt32], scratch sym: inout [UInt32], ranks: inout [UInt64]) {
        sym.removeAll(keepingCapacity: true)
        var lastWasUnknown = false
        var i = lo
        while i < hi {
            let c = b[i]
            // ASCII characters with a token: byteToken holds them (no hashing).
            if c < 0x80, byteToken[Int(c)] != UInt32.max { sym.append(byteToken[Int(c)]); lastWasUnknown = false; i += 1; continue }
            let n = min(c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2, hi - i)
            let start = i
            i += n
            if let t = chars[BPEModel.packedCharacter(b, start, n)] { sym.append(t); lastWasUnknown = false; continue }
            if let fb = byteFallback, (start..<i).allSatisfy({ fb[Int(b[$0])] != UInt32.max }) {
                for k in start..<i { sym.append(fb[Int(b[k])]) }
                lastWasUnknown = false
                continue
            }
            guard let unk = unknownId else { continue }
            if !(fuseUnknown && lastWasUnknown) { sym.append(unk) }
            lastWasUnknown = true
        }
        merge(&sym, &ranks)
        out.append(contentsOf: sym)
    }

    /// The n (1...4) UTF-8 bytes of a character at b[at...], little-endian in a UInt32: distinct
    /// characters give distinct keys (the lead byte fixes the length, continuation bytes are not 0).
    @inline(__always)
    static func packedCharacter(_ b: UnsafeBufferPointer<UInt8>, _ at: Int, _ n: Int) -> UInt32 {
        var key: UInt32 = 0
        for j in 0..<n { key |= UInt32(b[at + j]) << (8 * UInt32(j)) }
        return key
    }

    static func packedCharacter(_ utf8: [UInt8]) -> UInt32 {
        utf8.withUnsafeBufferPointer { packedCharacter($0, 0, $0.count) }
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
