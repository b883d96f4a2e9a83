extension BPETokenizer {
    /// The text of `ids`: the bytes of consecutive tokens joined and read as UTF-8, invalid
    /// sequences replaced by U+FFFD (maximal subparts, as Python's 'replace' and Rust's
    /// from_utf8_lossy do). `skipSpecialTokens` drops special added tokens (the bytes on both
    /// sides then join). Throws for an id outside the vocabulary.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        if metaspace != nil { return try decodeSentencePiece(ids, skipSpecialTokens: skipSpecialTokens) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for (k, id) in ids.enumerated() { try appendBytes(of: id, at: k, skipSpecialTokens: skipSpecialTokens, to: &bytes) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `tokenizers`' decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", n, 0)]:
    /// each run of `<0xXX>` tokens becomes its UTF-8 text, or one U+FFFD per byte when the run is
    /// not valid UTF-8 as a whole; then n leading spaces of the text are removed.
    func decodeSentencePiece(_ ids: [Int], skipSpecialTokens: Bool) throws -> String {
        var out = ""
        var run: [UInt8] = []
        func flush() {
            guard !run.isEmpty else { return }
            if let s = String(validating: run, as: UTF8.self) {
                out += s
            } else {
                out += String(repeating: "\u{FFFD}", count: run.count)
            }
            run.removeAll()
        }
        var text: [UInt8] = []
        for (k, id) in ids.enumerated() {
            text.removeAll(keepingCapacity: true)
            try appendBytes(of: id, at: k, skipSpecialTokens: skipSpecialTokens, to: &text)
            if skipSpecialTokens && isSpecial[id] { continue }
            if isByteToken[id] { run.append(contentsOf: text); continue }
            flush()
            out += String(decoding: text, as: UTF8.self)
        }
        flush()
        var strip = decoderStripsLeadingSpaces
        while strip > 0 && out.unicodeScalars.first == " " { out.unicodeScalars.removeFirst(); strip -= 1 }
        return out
    }

    /// The raw bytes a token stands for (its text for added tokens).
    public func bytes(of id: Int) throws -> [UInt8] {
        var b: [UInt8] = []
        try appendBytes(of: id, at: 0, skipSpecialTokens: false, to: &b)
        return b
    }

    func appendBytes(of id: Int, at position: Int, skipSpecialTokens: Bool, to bytes: inout [UInt8]) throws {
        guard id >= 0 && id < tokenStrings.count, tokenStrings[id] != nil else {
            let what = id >= 0 && id < tokenStrings.count ? "is not assigned to any token" : "is out of range 0..<\(tokenStrings.count)"
            throw QLoraError.invalidArgument("token id \(id) at position \(position) \(what)")
        }
        if skipSpecialTokens && isSpecial[id] { return }
        bytes.append(contentsOf: decodedBytes[offsets[id]..<offsets[id + 1]])
    }

    public func makeStreamingDecoder(skipSpecialTokens: Bool = false) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }
}
