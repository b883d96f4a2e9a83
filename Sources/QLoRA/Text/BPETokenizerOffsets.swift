extension BPETokenizer {
    /// `encode` with each token's span in `text`, in Unicode code points (Python str indices, as
    /// transformers' offset mapping): a token covering part of a character's bytes spans the
    /// whole character; a space the pre-tokenizer inserted (add_prefix_space) is not counted.
    public func encodeWithOffsets(_ text: String, splitSpecialTokens: Bool = false) -> (ids: [Int], offsets: [Range<Int>]) {
        var ids: [Int] = []
        var spans: [Range<Int>] = []
        var text = text
        text.withUTF8 { b in
            // The code point index of every byte (continuation bytes share their lead's).
            var scalarOf = [Int](repeating: 0, count: b.count + 1)
            var n = -1
            for i in 0..<b.count {
                if b[i] & 0xC0 != 0x80 { n += 1 }
                scalarOf[i] = max(n, 0)
            }
            scalarOf[b.count] = n + 1
            func span(_ lo: Int, _ hi: Int) -> Range<Int> {
                hi > lo ? scalarOf[lo]..<(scalarOf[hi - 1] + 1) : scalarOf[lo]..<scalarOf[lo]
            }
            var encoder = PieceEncoder(model: model)
            var pieceIds: [UInt32] = []
            for (range, addedId) in added.split(b, skipSpecial: splitSpecialTokens) {
                if let id = addedId { ids.append(id); spans.append(span(range.lowerBound, range.upperBound)); continue }
                pieceIds.removeAll(keepingCapacity: true)
                if let rule = metaspace {
                    // Each token covers the next bytes of the normalized piece (its vocabulary
                    // spelling, one byte for `<0xXX>`); its span is where those bytes came from.
                    var sources: [[Int]] = []
                    for (piece, source) in zip(rule.pieces(b, range, sources: &sources), sources) {
                        pieceIds.removeAll(keepingCapacity: true)
                        piece.withUnsafeBufferPointer { c in encoder.encode(c, 0..<c.count, into: &pieceIds) }
                        var p = 0
                        for id in pieceIds {
                            let i = Int(id)
                            var n = isByteToken[i] ? 1 : Int(id) == model.unknownId.map({ Int($0) }) ? 0 : tokenStrings[i]?.utf8.count ?? 0
                            if n == 0 && p < piece.count {  // the unknown token: one character
                                let c = piece[p]
                                n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2
                            }
                            let lo = min(p, piece.count), hi = min(p + n, piece.count)
                            ids.append(i)
                            spans.append(hi > lo ? span(source[lo], source[hi - 1] + 1) : span(range.upperBound, range.upperBound))
                            p = hi
                        }
                    }
                    continue
                }
                if preTokenizer.addsPrefixSpace {
                    for piece in preTokenizer.applyOwned([Array(b[range])]) {
                        piece.withUnsafeBufferPointer { c in encoder.encode(c, 0..<c.count, into: &pieceIds) }
                    }
                } else {
                    for piece in preTokenizer.apply(b, [range]) { encoder.encode(b, piece, into: &pieceIds) }
                }
                // Align the tokens' bytes with the segment: bytes missing from the vocabulary
                // were dropped, and a leading inserted space has no source byte.
                var cursor = range.lowerBound
                for id in pieceIds {
                    let tb = decodedBytes[offsets[Int(id)]..<offsets[Int(id) + 1]]
                    func matches(_ bytes: ArraySlice<UInt8>, at p: Int) -> Bool {
                        p + bytes.count <= range.upperBound && zip(bytes, b[p..<(p + bytes.count)]).allSatisfy { $0 == $1 }
                    }
                    var start = cursor
                    var length = tb.count
                    if !matches(tb, at: cursor) {
                        if tb.first == 0x20 && matches(tb.dropFirst(), at: cursor) {
                            length -= 1
                        } else {
                            var p = cursor + 1
                            while p < range.upperBound && !matches(tb, at: p) { p += 1 }
                            if p < range.upperBound { start = p } else { length = 0 }
                        }
                    }
                    ids.append(Int(id))
                    spans.append(span(start, start + length))
                    cursor = start + length
                }
            }
        }
        return (ids, spans)
    }
}
