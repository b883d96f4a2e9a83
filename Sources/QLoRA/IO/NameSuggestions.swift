/// "Did you mean …": the names closest to a name that was not found.
enum NameSuggestions {
    /// Up to `limit` names at the smallest edit distance from `name`, if that distance is small;
    /// else the names ending in `name` after a "." or "_" (e.g. "proj.weight" →
    /// "model.layers.0.mlp.up_proj.weight").
    static func near(_ name: String, in names: [String], limit: Int = 3) -> [String] {
        let target = Array(name.utf8)
        let budget = max(2, target.count / 6)
        let scored = names.map { ($0, distance(target, Array($0.utf8), cap: budget)) }
        if let best = scored.map(\.1).min(), best <= budget {
            return Array(scored.filter { $0.1 == best }.map(\.0).sorted().prefix(limit))
        }
        return Array(names.filter { $0.hasSuffix("." + name) || $0.hasSuffix("_" + name) }.sorted().prefix(limit))
    }

    /// Levenshtein distance, or cap + 1 once it must exceed `cap`.
    static func distance(_ a: [UInt8], _ b: [UInt8], cap: Int) -> Int {
        if abs(a.count - b.count) > cap { return cap + 1 }
        if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            var rowMin = i
            for j in 1...b.count {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                rowMin = min(rowMin, current[j])
            }
            if rowMin > cap { return cap + 1 }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
