/// Parses template tokens into nodes, with jinja2's operator precedence (loosest first):
/// `x if c else y`, `or`, `and`, `not`, comparisons / `in` / `not in`, `+ -`, `~`, `* / // %`,
/// `**`, unary `-`, then primaries with `.attr`, `[item]`, `[a:b]`, calls, `|filter` and `is test`.
/// Anything outside the supported subset is an error naming the construct and its line:column.
struct JinjaParser {
    let tokens: [(JinjaToken, JinjaPosition)]
    var k = 0
    /// Nesting of statements and expressions, bounded so a hostile template cannot exhaust the stack.
    var depth = 0
    static let maxDepth = 200

    mutating func enter() throws {
        depth += 1
        guard depth <= JinjaParser.maxDepth else { throw error(pos, "nested more than \(JinjaParser.maxDepth) levels deep") }
    }

    static func parse(_ source: String) throws -> [JinjaNode] {
        var p = JinjaParser(tokens: try JinjaLexer.tokenize(source))
        let (nodes, end) = try p.nodes(until: [])
        if let (name, pos) = end { throw p.error(pos, "unexpected '{% \(name) %}'") }
        return nodes
    }

    func error(_ pos: JinjaPosition, _ what: String) -> QLoraError { .invalidArgument("chat template \(pos): \(what)") }
    func unsupported(_ pos: JinjaPosition, _ what: String) -> QLoraError {
        .unsupported("chat template \(pos): \(what) is not supported by this Jinja interpreter")
    }

    var current: JinjaToken? { k < tokens.count ? tokens[k].0 : nil }
    var pos: JinjaPosition { k < tokens.count ? tokens[k].1 : (tokens.last?.1 ?? JinjaPosition(line: 1, column: 1)) }

    func describe(_ t: JinjaToken?) -> String {
        switch t {
        case nil: return "the end of the template"
        case .text?: return "text"
        case .variableBegin?: return "'{{'"
        case .variableEnd?: return "'}}'"
        case .blockBegin?: return "'{%'"
        case .blockEnd?: return "'%}'"
        case .name(let n)?: return "'\(n)'"
        case .string(let s)?: return "string \(s.debugDescription)"
        case .int(let i)?: return "\(i)"
        case .float(let d)?: return "\(d)"
        case .op(let o)?: return "'\(o)'"
        }
    }

    mutating func expect(_ t: JinjaToken) throws {
        guard current == t else { throw error(pos, "expected \(describe(t)), got \(describe(current))") }
        k += 1
    }

    mutating func accept(_ t: JinjaToken) -> Bool {
        if current == t { k += 1; return true }
        return false
    }

    mutating func nameToken() throws -> String {
        guard case .name(let n)? = current else { throw error(pos, "expected a name, got \(describe(current))") }
        k += 1
        return n
    }

    /// Nodes up to a block tag whose keyword is in `stop` (consumed up to and including its
    /// keyword; the rest of that tag is left to the caller). Returns the keyword met, nil at the end.
    mutating func nodes(until stop: Set<String>) throws -> ([JinjaNode], (String, JinjaPosition)?) {
        var out: [JinjaNode] = []
        while let t = current {
            switch t {
            case .text(let s):
                out.append(.text(s)); k += 1
            case .variableBegin:
                k += 1
                out.append(.output(try expression()))
                try expect(.variableEnd)
            case .blockBegin:
                k += 1
                let at = pos
                let keyword = try nameToken()
                if stop.contains(keyword) { return (out, (keyword, at)) }
                out.append(try statement(keyword, at))
            default:
                throw error(pos, "unexpected \(describe(t))")
            }
        }
        return (out, nil)
    }

    mutating func body(_ opener: String, _ at: JinjaPosition, until stop: Set<String>) throws -> ([JinjaNode], String) {
        let (b, end) = try nodes(until: stop)
        guard let (keyword, _) = end else {
            throw error(at, "'{% \(opener) %}' is never closed (expected \(stop.sorted().map { "'\($0)'" }.joined(separator: " or ")))")
        }
        return (b, keyword)
    }

    mutating func statement(_ keyword: String, _ at: JinjaPosition) throws -> JinjaNode {
        try enter()
        defer { depth -= 1 }
        switch keyword {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var cond = try expression()
            try expect(.blockEnd)
            while true {
                let (b, end) = try body("if", at, until: ["elif", "else", "endif"])
                branches.append((cond, b))
                switch end {
                case "elif":
                    cond = try expression()
                    try expect(.blockEnd)
                case "else":
                    try expect(.blockEnd)
                    let (e, _) = try body("if", at, until: ["endif"])
                    try expect(.blockEnd)
                    return .ifChain(branches, otherwise: e)
                default:
                    try expect(.blockEnd)
                    return .ifChain(branches, otherwise: [])
                }
            }
        case "for":
            var names = [try nameToken()]
            while accept(.op(",")) { names.append(try nameToken()) }
            try expect(.name("in"))
            let iterable = try conditionalFree()
            var filter: JinjaExpr? = nil
            if accept(.name("if")) { filter = try conditionalFree() }
            if accept(.name("recursive")) { throw unsupported(at, "'for ... recursive'") }
            try expect(.blockEnd)
            let (b, end) = try body("for", at, until: ["else", "endfor"])
            var otherwise: [JinjaNode] = []
            try expect(.blockEnd)
            if end == "else" {
                (otherwise, _) = try body("for", at, until: ["endfor"])
                try expect(.blockEnd)
            }
            return .forLoop(target: names.count == 1 ? .name(names[0]) : .tuple(names), iterable: iterable,
                            filter: filter, body: b, otherwise: otherwise, at)
        case "set":
            let first = try nameToken()
            var target = JinjaTarget.name(first)
            if accept(.op(".")) {
                target = .attribute(first, try nameToken(), at)
            } else if current == .op(",") {
                var names = [first]
                while accept(.op(",")) { names.append(try nameToken()) }
                target = .tuple(names)
            }
            if accept(.blockEnd) {
                guard case .name(let n) = target else { throw unsupported(at, "a block 'set' of an attribute or tuple") }
                let (b, _) = try body("set", at, until: ["endset"])
                try expect(.blockEnd)
                return .setBlock(n, b)
            }
            try expect(.op("="))
            let value = try tupleOrExpression()
            try expect(.blockEnd)
            return .set(target, value, at)
        case "macro":
            let name = try nameToken()
            var parameters: [(String, JinjaExpr?)] = []
            try expect(.op("("))
            while !accept(.op(")")) {
                if !parameters.isEmpty { try expect(.op(",")) }
                if accept(.op(")")) { break }
                let p = try nameToken()
                parameters.append((p, accept(.op("=")) ? try expression() : nil))
            }
            try expect(.blockEnd)
            let (b, _) = try body("macro", at, until: ["endmacro"])
            if case .name? = current { k += 1 }  // {% endmacro name %}
            try expect(.blockEnd)
            return .macro(name: name, parameters: parameters, body: b)
        case "break", "continue":
            try expect(.blockEnd)
            return keyword == "break" ? .breakLoop(at) : .continueLoop(at)
        case "generation":
            try expect(.blockEnd)
            let (b, _) = try body("generation", at, until: ["endgeneration"])
            try expect(.blockEnd)
            return .generation(b)
        default:
            throw unsupported(at, "the '{% \(keyword) %}' tag")
        }
    }

    // MARK: expressions

    /// `a, b` without brackets (a tuple) or one expression.
    mutating func tupleOrExpression() throws -> JinjaExpr {
        let first = try expression()
        guard current == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) {
            if current == .blockEnd || current == .variableEnd { break }
            items.append(try expression())
        }
        return .tuple(items)
    }

    mutating func expression() throws -> JinjaExpr {
        try enter()
        defer { depth -= 1 }
        let value = try orExpr()
        if accept(.name("if")) {
            let cond = try orExpr()
            let otherwise = accept(.name("else")) ? try expression() : nil
            return .conditional(then: value, condition: cond, otherwise: otherwise)
        }
        return value
    }

    /// An expression without a top-level `x if c else y` (for-loop iterables and filters).
    mutating func conditionalFree() throws -> JinjaExpr { try orExpr() }

    mutating func orExpr() throws -> JinjaExpr {
        var l = try andExpr()
        while accept(.name("or")) { l = .or(l, try andExpr()) }
        return l
    }

    mutating func andExpr() throws -> JinjaExpr {
        var l = try notExpr()
        while accept(.name("and")) { l = .and(l, try notExpr()) }
        return l
    }

    mutating func notExpr() throws -> JinjaExpr {
        if current == .name("not") {
            try enter()
            defer { depth -= 1 }
            k += 1
            return .not(try notExpr())
        }
        return try compare()
    }

    mutating func compare() throws -> JinjaExpr {
        let at = pos
        let first = try add()
        var rest: [(String, JinjaExpr)] = []
        while true {
            if case .op(let o)? = current, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                k += 1; rest.append((o, try add()))
            } else if current == .name("in") {
                k += 1; rest.append(("in", try add()))
            } else if current == .name("not"), k + 1 < tokens.count, tokens[k + 1].0 == .name("in") {
                k += 2; rest.append(("not in", try add()))
            } else { break }
        }
        return rest.isEmpty ? first : .compare(first, rest, at)
    }

    mutating func add() throws -> JinjaExpr {
        var l = try concat()
        while case .op(let o)? = current, o == "+" || o == "-" {
            let at = pos; k += 1
            l = .binary(o, l, try concat(), at)
        }
        return l
    }

    mutating func concat() throws -> JinjaExpr {
        var l = try multiply()
        while current == .op("~") {
            let at = pos; k += 1
            l = .binary("~", l, try multiply(), at)
        }
        return l
    }

    mutating func multiply() throws -> JinjaExpr {
        var l = try power()
        while case .op(let o)? = current, ["*", "/", "//", "%"].contains(o) {
            let at = pos; k += 1
            l = .binary(o, l, try power(), at)
        }
        return l
    }

    mutating func power() throws -> JinjaExpr {
        var l = try unary()
        while current == .op("**") {
            let at = pos; k += 1
            l = .binary("**", l, try unary(), at)
        }
        return l
    }

    mutating func unary(withFilters: Bool = true) throws -> JinjaExpr {
        let at = pos
        try enter()
        defer { depth -= 1 }
        var node: JinjaExpr
        if accept(.op("-")) { node = .negate(try unary(withFilters: false), at) }
        else if accept(.op("+")) { node = try unary(withFilters: false) }
        else { node = try primary() }
        node = try postfix(node)
        if withFilters { node = try filters(node) }
        return node
    }

    mutating func primary() throws -> JinjaExpr {
        let at = pos
        guard let t = current else { throw error(at, "expected an expression, got the end of the template") }
        k += 1
        switch t {
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n, at)
            }
        case .string(var s):
            while case .string(let more)? = current { s += more; k += 1 }  // adjacent literals join
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .float(let d): return .literal(.float(d))
        case .op("("):
            if accept(.op(")")) { return .tuple([]) }
            let first = try expression()
            if accept(.op(")")) { return first }
            var items = [first]
            while accept(.op(",")) {
                if current == .op(")") { break }
                items.append(try expression())
            }
            try expect(.op(")"))
            return .tuple(items)
        case .op("["):
            var items: [JinjaExpr] = []
            while !accept(.op("]")) {
                if !items.isEmpty { try expect(.op(",")); if accept(.op("]")) { break } }
                items.append(try expression())
            }
            return .list(items)
        case .op("{"):
            var pairs: [(JinjaExpr, JinjaExpr)] = []
            while !accept(.op("}")) {
                if !pairs.isEmpty { try expect(.op(",")); if accept(.op("}")) { break } }
                let key = try expression()
                try expect(.op(":"))
                pairs.append((key, try expression()))
            }
            return .dict(pairs)
        default:
            throw error(at, "expected an expression, got \(describe(t))")
        }
    }

    mutating func postfix(_ start: JinjaExpr) throws -> JinjaExpr {
        var node = start
        while true {
            let at = pos
            if accept(.op(".")) {
                if case .int(let i)? = current { k += 1; node = .item(node, .literal(.int(i)), at); continue }
                node = .attribute(node, try nameToken(), at)
            } else if accept(.op("[")) {
                var parts: [JinjaExpr?] = [nil]
                var colons = 0
                while !accept(.op("]")) {
                    if accept(.op(":")) { colons += 1; parts.append(nil); continue }
                    guard parts[parts.count - 1] == nil else { throw error(pos, "expected ']' or ':', got \(describe(current))") }
                    parts[parts.count - 1] = try expression()
                }
                if colons == 0 {
                    guard let index = parts[0] else { throw error(at, "empty subscript") }
                    node = .item(node, index, at)
                } else {
                    guard colons <= 2 else { throw error(at, "a slice takes at most two ':'") }
                    while parts.count < 3 { parts.append(nil) }
                    node = .slice(node, parts[0], parts[1], parts[2], at)
                }
            } else if current == .op("(") {
                let (args, kwargs) = try callArguments()
                node = .call(node, args, kwargs, at)
            } else {
                return node
            }
        }
    }

    mutating func callArguments() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        try expect(.op("("))
        var args: [JinjaExpr] = []
        var kwargs: [(String, JinjaExpr)] = []
        while !accept(.op(")")) {
            if !(args.isEmpty && kwargs.isEmpty) { try expect(.op(",")); if accept(.op(")")) { break } }
            if case .name(let n)? = current, k + 1 < tokens.count, tokens[k + 1].0 == .op("=") {
                k += 2
                kwargs.append((n, try expression()))
            } else {
                if current == .op("*") || current == .op("**") { throw unsupported(pos, "'*args' / '**kwargs' in a call") }
                args.append(try expression())
            }
        }
        return (args, kwargs)
    }

    mutating func filters(_ start: JinjaExpr) throws -> JinjaExpr {
        var node = start
        while true {
            let at = pos
            if accept(.op("|")) {
                var name = try nameToken()
                while accept(.op(".")) { name += "." + (try nameToken()) }
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if current == .op("(") { (args, kwargs) = try callArguments() }
                node = .filter(node, name, args, kwargs, at)
            } else if accept(.name("is")) {
                let negated = accept(.name("not"))
                let name = try nameToken()
                var args: [JinjaExpr] = []
                if current == .op("(") {
                    let (a, kw) = try callArguments()
                    guard kw.isEmpty else { throw unsupported(at, "keyword arguments to a test") }
                    args = a
                } else if let t = current, startsTestArgument(t) {
                    args = [try primary()]  // `is divisibleby 3`, `is sameas none`
                    args[0] = try postfix(args[0])
                }
                node = .test(node, name, args, negated: negated, at)
            } else if current == .op("(") {
                let (args, kwargs) = try callArguments()
                node = .call(node, args, kwargs, at)
            } else {
                return node
            }
        }
    }

    /// Whether a token after `is name` starts its single argument (jinja2 allows one without parentheses).
    func startsTestArgument(_ t: JinjaToken) -> Bool {
        switch t {
        case .string, .int, .float: return true
        case .name(let n): return !["else", "or", "and", "is", "in", "if", "not"].contains(n)
        case .op(let o): return o == "[" || o == "{"
        default: return false
        }
    }
}
