/// "Did you mean …": the names closest to a name that was not found.
enum NameSuggestions {
    /// Up to `limit` names within a small edit distance of `name` (closest first), else the names
    /// ending in `name` as a dotted suffix (e.g. "proj.weight" → "model.layers.0.mlp.up_proj.weight").
    static func near(_ name: String, in names: [String], limit: Int = 3) -> [String] {
        let target = Array(name.utf8)
        let budget = max(2, target.count / 6)
        let close = names.compactMap { candidate -> (String, Int)? in
            let d = distance(target, Array(candidate.utf8), cap: budget)
            return d <= budget ? (candidate, d) : nil
        }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map(\.0)
        if !close.isEmpty { return Array(close.prefix(limit)) }
        return Array(names.filter { $0.hasSuffix("." + name) || $0.hasSuffix("_" + name) }.sorted().prefix(limit))
    }

    /// Levenshtein distance, or cap + 1 once it must exceed `cap`.
    static func distance(_ a: [UInt8], _ b: [UInt8], cap: Int) -> Int {
        if abs(a.count - b.count) > cap { return cap + 1 }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            current[0] = i
            var rowMin = current[0]
            for j in 1..<(b.count + 1) {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                rowMin = min(rowMin, current[j])
            }
            if rowMin > cap { return cap + 1 }
            swap(&previous, &current)
        }
        return a.isEmpty ? b.count : previous[b.count]
    }
}
