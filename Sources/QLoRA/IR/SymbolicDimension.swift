import Foundation

/// Symbolic dimensions: sizes named in the IR (`seq`, `batch`, ...) and chosen only when a plan
/// is compiled (`Graph.compile(_:sizes:)`). In a shape a symbolic dimension is a negative number
/// that stands for its name (the same name gives the same number everywhere in the process), so
/// every type rule that compares dimensions works on symbolic shapes unchanged; the few that do
/// arithmetic on dimensions (reshape) compare `SymbolicProduct`s.
public enum SymbolicDimension {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var names: [String] = []

    /// The dimension standing for `name` in shapes.
    public static func named(_ name: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        if let i = names.firstIndex(of: name) { return -1 - i }
        names.append(name)
        return -names.count
    }

    /// The name of a symbolic dimension (nil for a concrete size).
    public static func name(of dim: Int) -> String? {
        guard dim < 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        return -1 - dim < names.count ? names[-1 - dim] : nil
    }

    /// A dimension as printers show it: the number, or the symbol's name.
    static func describe(_ dim: Int) -> String { name(of: dim) ?? String(dim) }

    /// `dim` with symbols replaced from `sizes`, or an error naming the missing symbol.
    static func bind(_ dim: Int, _ sizes: [String: Int]) throws -> Int {
        guard let name = name(of: dim) else { return dim }
        guard let size = sizes[name] else {
            throw QLoraError.invalidArgument("dimension '\(name)' has no size; compile with sizes: [\"\(name)\": N]")
        }
        return size
    }
}

/// The product of a shape's dimensions with symbols kept apart: two shapes hold the same number
/// of elements for every choice of sizes exactly when their products are equal.
struct SymbolicProduct: Equatable {
    var constant = 1
    var symbols: [Int] = []

    init(_ shape: [Int]) {
        for d in shape { if d < 0 { symbols.append(d) } else { constant *= d } }
        symbols.sort()
    }
}

extension Array where Element == Int {
    /// True when no dimension is symbolic.
    var isConcrete: Bool { allSatisfy { $0 >= 0 } }
}
