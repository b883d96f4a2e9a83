/// The sizes a graph has learned for its symbolic dimensions while recording, each with where it
/// came from (a `--dim`, an input's shape, a checkpoint tensor). Type rules compare dimensions
/// through it (`OpSite.same`): a symbol meeting a size takes that size; two different symbols
/// never merge. Graph files and the Swift API record through this one engine.
final class DimensionBindings: @unchecked Sendable {
    private(set) var sizes: [Int: Int] = [:]
    private var origins: [Int: String] = [:]

    /// The size `d` stands for: itself, or a bound symbol's size (an unbound symbol stays).
    func resolve(_ d: Int) -> Int { d < 0 ? sizes[d] ?? d : d }

    /// True when `a` and `b` are (or now are) the same dimension.
    func unify(_ a: Int, _ b: Int, origin: String = "an op's operands") -> Bool {
        let ra = resolve(a), rb = resolve(b)
        if ra == rb { return true }
        if ra < 0, rb >= 0 { sizes[ra] = rb; origins[ra] = origin; return true }
        if rb < 0, ra >= 0 { sizes[rb] = ra; origins[rb] = origin; return true }
        return false
    }

    /// Gives `dim` the size `size` (or checks it has it); `source` says where the size comes from.
    /// Returns nil, or the disagreement, saying which side said what.
    func bind(_ dim: Int, _ size: Int, source: String) -> String? {
        let current = resolve(dim)
        if current == size { return nil }
        if current < 0 { sizes[current] = size; origins[current] = source; return nil }
        if let name = SymbolicDimension.name(of: dim) {
            return "shape disagreement: dimension '\(name)' is \(current) (from \(origins[dim] ?? "?")) but \(source) gives \(size)"
        }
        return "shape disagreement: the graph says \(current) but \(source) gives \(size)"
    }

    /// Every bound dimension by name.
    var sizesByName: [String: Int] {
        Dictionary(uniqueKeysWithValues: sizes.compactMap { d, n in SymbolicDimension.name(of: d).map { ($0, n) } })
    }
}
