/// An expression of the Jinja subset chat templates use.
indirect enum JinjaExpr {
    case literal(JinjaValue)
    case name(String, JinjaPosition)
    case list([JinjaExpr])
    case tuple([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String, JinjaPosition)
    case item(JinjaExpr, JinjaExpr, JinjaPosition)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?, JinjaPosition)
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)], JinjaPosition)
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)], JinjaPosition)
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool, JinjaPosition)
    case not(JinjaExpr)
    case negate(JinjaExpr, JinjaPosition)
    case binary(String, JinjaExpr, JinjaExpr, JinjaPosition)
    case and(JinjaExpr, JinjaExpr)
    case or(JinjaExpr, JinjaExpr)
    /// a < b < c: the first operand, then (operator, operand) pairs.
    case compare(JinjaExpr, [(String, JinjaExpr)], JinjaPosition)
    case conditional(then: JinjaExpr, condition: JinjaExpr, otherwise: JinjaExpr?)
}

/// Where `set` / `for` store a value.
enum JinjaTarget {
    case name(String)
    case tuple([String])
    case attribute(String, String, JinjaPosition)  // namespace.attr
}

/// A statement (node of the template body).
indirect enum JinjaNode {
    case text(String)
    case output(JinjaExpr)
    case ifChain([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode])
    case forLoop(target: JinjaTarget, iterable: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], JinjaPosition)
    case set(JinjaTarget, JinjaExpr, JinjaPosition)
    case setBlock(String, [JinjaNode])
    case macro(name: String, parameters: [(String, JinjaExpr?)], body: [JinjaNode])
    case breakLoop(JinjaPosition)
    case continueLoop(JinjaPosition)
    /// transformers' `{% generation %}` marks assistant text; it renders its body.
    case generation([JinjaNode])
}
