/// One fusion: a pattern and the node that replaces its root. The rewrite may still decline
/// (return nil) after looking at shapes the pattern cannot express.
struct FusionRule: Sendable {
    var name: String
    var pattern: Pattern
    /// The root's two operands may match in either order (add, mul).
    var commutative = false
    var rewrite: @Sendable (PatternMatch) -> Rewrite?

    struct Rewrite {
        var op: Op
        var operands: [Int]
        /// A new label for the root (nil keeps it).
        var label: String? = nil
    }
}
