extension BPETokenizer {
    /// The ids of `text`. Added tokens in the text are always matched (unless
    /// `splitSpecialTokens`, which treats special ones as text, like transformers'
    /// `split_special_tokens=True`); `addSpecialTokens` puts the configured BOS/EOS around them
    /// (tokenizer_config's add_bos_token / add_eos_token, else the post_processor's template).
    public func encode(_ text: String, addSpecialTokens: Bool = false, splitSpecialTokens: Bool = false) -> [Int] {
        var ids: [UInt32] = []
        encodeRaw(text, splitSpecialTokens: splitSpecialTokens, into: &ids)
        var out: [Int] = []
        out.reserveCapacity(ids.count + prefixIds.count + suffixIds.count)
        if addSpecialTokens { out.append(contentsOf: prefixIds) }
        for id in ids { out.append(Int(id)) }
        if addSpecialTokens { out.append(contentsOf: suffixIds) }
        return out
    }

    /// `encode` into 32-bit ids appended to `ids`, without special tokens around them.
    public func encodeRaw(_ text: String, splitSpecialTokens: Bool = false, into ids: inout [UInt32]) {
        var text = text
        text.withUTF8 { b in
            var encoder = PieceEncoder(model: model)
            for (range, addedId) in added.split(b, skipSpecial: splitSpecialTokens) {
                if let id = addedId { ids.append(UInt32(id)); continue }
                if let rule = metaspace {
                    for piece in rule.pieces(b, range) {
                        piece.withUnsafeBufferPointer { c in encoder.encode(c, 0..<c.count, into: &ids) }
                    }
                    continue
                }
                if preTokenizer.addsPrefixSpace {
                    for piece in preTokenizer.applyOwned([Array(b[range])]) {
                        piece.withUnsafeBufferPointer { c in encoder.encode(c, 0..<c.count, into: &ids) }
                    }
                    continue
                }
                for piece in preTokenizer.apply(b, [range]) { encoder.encode(b, piece, into: &ids) }
            }
        }
    }
}

/// BPE of pieces with a cache of the pieces already seen in this call (words repeat a lot).
struct PieceEncoder {
    let model: BPEModel
    var cache = PieceCache()
    var sym: [UInt32] = []
    var ranks: [UInt64] = []
    static let maxCachedLength = 64

    init(model: BPEModel) { self.model = model }

    mutating func encode(_ b: UnsafeBufferPointer<UInt8>, _ piece: Range<Int>, into ids: inout [UInt32]) {
        let n = piece.count
        if n == 0 { return }
        if n == 1 {
            let t = model.byteToken[Int(b[piece.lowerBound])]
            if t != UInt32.max { ids.append(t) } else { model.encode(b, piece.lowerBound, piece.upperBound, into: &ids, scratch: &sym, ranks: &ranks) }
            return
        }
        if n > PieceEncoder.maxCachedLength {
            model.encode(b, piece.lowerBound, piece.upperBound, into: &ids, scratch: &sym, ranks: &ranks)
            return
        }
        let h = PieceCache.hash(b, piece)
        if let r = cache.find(b, piece, hash: h) {
            ids.append(contentsOf: cache.ids[r])
            return
        }
        let start = ids.count
        model.encode(b, piece.lowerBound, piece.upperBound, into: &ids, scratch: &sym, ranks: &ranks)
        cache.insert(b, piece, hash: h, result: ids[start...])
    }
}
