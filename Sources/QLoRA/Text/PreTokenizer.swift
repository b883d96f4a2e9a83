/// A Hugging Face pre-tokenizer: how text is cut into pieces before BPE. Pieces are byte ranges
/// of the UTF-8 text; the byte-to-unicode mapping of ByteLevel is implicit (BPE runs on bytes).
public indirect enum PreTokenizer: Equatable, Sendable {
    /// `ByteLevel`: with `useRegex`, GPT-2's split; `addPrefixSpace` puts a space before a piece
    /// that does not start with one.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    /// `Split`: cut at the matches of `pattern`, keeping them per `behavior` (`invert` swaps the
    /// roles of matches and the text between them).
    case split(pattern: SplitPattern, behavior: SplitBehavior, invert: Bool)
    /// `Digits`: number characters alone (`individualDigits`) or in runs.
    case digits(individualDigits: Bool)
    case sequence([PreTokenizer])

    /// What a Split does with a match.
    public enum SplitBehavior: String, Equatable, Sendable {
        case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
        case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
    }

    /// Whether a ByteLevel step is present (the BPE then works on bytes).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case let .sequence(steps): return steps.contains { $0.isByteLevel }
        default: return false
        }
    }

    /// Whether some step puts a space before pieces (then pieces may need new bytes).
    var addsPrefixSpace: Bool {
        switch self {
        case let .byteLevel(add, _): return add
        case let .sequence(steps): return steps.contains { $0.addsPrefixSpace }
        default: return false
        }
    }

    /// Cuts each piece of `pieces` (byte ranges of `b`) further.
    func apply(_ b: UnsafeBufferPointer<UInt8>, _ pieces: [Range<Int>]) -> [Range<Int>] {
        switch self {
        case let .sequence(steps):
            var p = pieces
            for s in steps { p = s.apply(b, p) }
            return p
        case let .byteLevel(_, useRegex):
            guard useRegex else { return pieces }
            return PreTokenizer.split(b, pieces, .gpt2, .isolated, false)
        case let .split(pattern, behavior, invert):
            return PreTokenizer.split(b, pieces, pattern, behavior, invert)
        case let .digits(individual):
            return PreTokenizer.split(b, pieces, .numberCharacter, individual ? .isolated : .contiguous, false)
        }
    }

    /// The slow path for pre-tokenizers with ByteLevel(add_prefix_space: true), which puts a
    /// space before every piece (of the steps before it) that does not start with one, so
    /// pieces become new byte strings.
    func applyOwned(_ pieces: [[UInt8]]) -> [[UInt8]] {
        func cut(_ piece: [UInt8], _ step: PreTokenizer) -> [[UInt8]] {
            piece.withUnsafeBufferPointer { b in step.apply(b, [0..<b.count]).map { Array(b[$0]) } }
        }
        switch self {
        case let .sequence(steps):
            var p = pieces
            for s in steps { p = s.applyOwned(p) }
            return p
        case let .byteLevel(addPrefixSpace, useRegex):
            return pieces.flatMap { piece -> [[UInt8]] in
                let q = addPrefixSpace && piece.first != 0x20 ? [0x20] + piece : piece
                return cut(q, .byteLevel(addPrefixSpace: false, useRegex: useRegex))
            }
        default:
            return pieces.flatMap { cut($0, self) }
        }
    }

    static func split(_ b: UnsafeBufferPointer<UInt8>, _ pieces: [Range<Int>], _ pattern: SplitPattern,
                      _ behavior: SplitBehavior, _ invert: Bool) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(pieces.count * 4)
        // The fast, common case: a pattern that matches everything, isolated.
        if behavior == .isolated && !invert {
            for piece in pieces {
                var cursor = piece.lowerBound
                pattern.matches(b, piece.lowerBound, piece.upperBound) { s, e in
                    if s > cursor { out.append(cursor..<s) }
                    if e > s { out.append(s..<e) }
                    cursor = e
                }
                if cursor < piece.upperBound { out.append(cursor..<piece.upperBound) }
            }
            return out
        }
        for piece in pieces {
            // The piece as alternating (range, isMatch) parts.
            var parts: [(Range<Int>, Bool)] = []
            var cursor = piece.lowerBound
            pattern.matches(b, piece.lowerBound, piece.upperBound) { s, e in
                if s > cursor { parts.append((cursor..<s, invert)) }
                if e > s { parts.append((s..<e, !invert)) }
                cursor = e
            }
            if cursor < piece.upperBound { parts.append((cursor..<piece.upperBound, invert)) }
            var pending: Range<Int>? = nil   // a piece that may still grow
            var pendingIsMatch = false
            func flush() { if let p = pending { out.append(p) }; pending = nil }
            for (r, isMatch) in parts {
                switch behavior {
                case .removed:
                    if !isMatch { out.append(r) }
                case .isolated:
                    out.append(r)
                case .mergedWithPrevious:
                    if isMatch, let p = pending { pending = p.lowerBound..<r.upperBound; flush() }
                    else if isMatch { out.append(r) }
                    else { flush(); pending = r }
                case .mergedWithNext:
                    if isMatch { flush(); pending = r }
                    else if let p = pending { pending = p.lowerBound..<r.upperBound; flush() }
                    else { out.append(r) }
                case .contiguous:  // consecutive parts of the same kind join (as in tokenizers)
                    if isMatch == pendingIsMatch, let p = pending { pending = p.lowerBound..<r.upperBound }
                    else { flush(); pending = r; pendingIsMatch = isMatch }
                }
            }
            flush()
        }
        return out
    }
}

extension PreTokenizer {
    /// Reads `pre_tokenizer` of a tokenizer.json (`path` names it in errors).
    static func parse(_ v: JSONValue, file: String, path: String) throws -> PreTokenizer {
        func bad(_ reason: String, _ at: String = path) -> QLoraError {
            .malformedFile(file: file, field: at, reason: reason)
        }
        guard case .string(let type)? = v["type"] else { throw bad("expected an object with a string 'type', got \(v.kind)") }
        func flag(_ key: String, _ fallback: Bool) throws -> Bool {
            switch v[key] {
            case nil, .null?: return fallback
            case .bool(let x)?: return x
            case let other?: throw bad("expected a boolean, got \(other.kind)", "\(path).\(key)")
            }
        }
        switch type {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try flag("add_prefix_space", true), useRegex: try flag("use_regex", true))
        case "Digits":
            return .digits(individualDigits: try flag("individual_digits", false))
        case "Sequence":
            guard case .array(let steps)? = v["pretokenizers"] else { throw bad("expected an array", "\(path).pretokenizers") }
            return .sequence(try steps.enumerated().map {
                try parse($0.element, file: file, path: "\(path).pretokenizers[\($0.offset)]")
            })
        case "Split":
            let pattern: SplitPattern
            switch v["pattern"] {
            case .object(_)? where v["pattern"]?["String"] != nil:
                guard case .string(let s)? = v["pattern"]?["String"] else { throw bad("expected a string", "\(path).pattern.String") }
                pattern = .literal(Array(s.utf8))
            case .object(_)? where v["pattern"]?["Regex"] != nil:
                guard case .string(let s)? = v["pattern"]?["Regex"] else { throw bad("expected a string", "\(path).pattern.Regex") }
                guard let p = SplitPattern.forRegex(s) else {
                    throw QLoraError.unsupported("\(file): \(path).pattern.Regex: split regex \(s.debugDescription) "
                        + "has no scanner (implemented: " + SplitPattern.supportedRegexes.map(\.debugDescription).joined(separator: ", ") + ")")
                }
                pattern = p
            default:
                throw bad("expected {\"String\": ...} or {\"Regex\": ...}", "\(path).pattern")
            }
            guard case .string(let b)? = v["behavior"], let behavior = SplitBehavior(rawValue: b) else {
                throw bad("expected one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous", "\(path).behavior")
            }
            return .split(pattern: pattern, behavior: behavior, invert: try flag("invert", false))
        default:
            throw QLoraError.unsupported("\(file): \(path).type: pre-tokenizer '\(type)' (implemented: ByteLevel, Split, Digits, Sequence)")
        }
    }
}
