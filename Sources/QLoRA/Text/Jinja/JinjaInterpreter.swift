import Foundation

/// Renders parsed template nodes. Scoping follows jinja2: a `for` body (and a macro body) gets
/// its own scope, so a `set` inside it does not survive the loop (templates use `namespace` for
/// that); `if` has no scope of its own. Undefined names are jinja2's default Undefined: empty
/// when printed, false when tested, an error when an attribute is taken of them.
struct JinjaInterpreter {
    var scopes: [[String: JinjaValue]]
    var output = ""

    enum Flow { case normal, breakLoop, continueLoop }

    /// The largest string, list or range a template may build (a hostile template cannot make
    /// the renderer allocate without bound this way).
    static let maxSize = 50_000_000

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    func error(_ pos: JinjaPosition, _ what: String) -> QLoraError { .invalidArgument("chat template \(pos): \(what)") }
    func unsupported(_ pos: JinjaPosition, _ what: String) -> QLoraError {
        .unsupported("chat template \(pos): \(what) is not supported by this Jinja interpreter")
    }

    func lookup(_ name: String) -> JinjaValue {
        for s in scopes.reversed() { if let v = s[name] { return v } }
        switch name {
        case "namespace", "raise_exception", "range", "dict", "strftime_now": return .function(name, bound: nil)
        default: return .undefined(name)
        }
    }

    mutating func assign(_ name: String, _ v: JinjaValue) { scopes[scopes.count - 1][name] = v }

    mutating func render(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            let flow = try render(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    mutating func render(_ node: JinjaNode) throws -> Flow {
        switch node {
        case .text(let s):
            output += s
        case .output(let e):
            output += try eval(e).string
        case let .ifChain(branches, otherwise):
            for (cond, body) in branches where try eval(cond).truthy { return try render(body) }
            return try render(otherwise)
        case let .forLoop(target, iterable, filter, body, otherwise, pos):
            return try forLoop(target, iterable, filter, body, otherwise, pos)
        case let .set(target, e, pos):
            try store(target, try eval(e), pos)
        case let .setBlock(name, body):
            let saved = output
            output = ""
            _ = try render(body)
            let v = output
            output = saved
            assign(name, .string(v))
        case let .macro(name, parameters, body):
            assign(name, .macro(name: name, parameters: parameters, body: body))
        case .breakLoop(let pos), .continueLoop(let pos):
            guard scopes.count > 1, scopes[scopes.count - 1]["loop"] != nil else { throw error(pos, "'break' / 'continue' outside a loop") }
            if case .breakLoop = node { return .breakLoop }
            return .continueLoop
        case .generation(let body):
            return try render(body)
        }
        return .normal
    }

    mutating func store(_ target: JinjaTarget, _ v: JinjaValue, _ pos: JinjaPosition) throws {
        switch target {
        case .name(let n): assign(n, v)
        case .tuple(let names):
            guard case .list(let items) = v, items.count == names.count else {
                throw error(pos, "cannot unpack \(v.typeName) into \(names.count) names")
            }
            for (n, x) in zip(names, items) { assign(n, x) }
        case let .attribute(object, attr, at):
            guard case .namespace(let ns) = lookup(object) else {
                throw error(at, "'\(object).\(attr)' can only be set on a namespace, '\(object)' is \(lookup(object).typeName)")
            }
            ns[attr] = v
        }
    }

    mutating func forLoop(_ target: JinjaTarget, _ iterable: JinjaExpr, _ filter: JinjaExpr?, _ body: [JinjaNode],
                          _ otherwise: [JinjaNode], _ pos: JinjaPosition) throws -> Flow {
        var items = try iterate(try eval(iterable), pos)
        scopes.append([:])
        defer { scopes.removeLast() }
        if let f = filter {
            var kept: [JinjaValue] = []
            for x in items {
                try store(target, x, pos)
                if try eval(f).truthy { kept.append(x) }
            }
            items = kept
        }
        if items.isEmpty {
            scopes[scopes.count - 1] = [:]
            _ = try render(otherwise)
            return .normal
        }
        let n = items.count
        for (i, x) in items.enumerated() {
            scopes[scopes.count - 1] = [:]
            try store(target, x, pos)
            var loop: [(String, JinjaValue)] = [
                ("index", .int(i + 1)), ("index0", .int(i)), ("revindex", .int(n - i)), ("revindex0", .int(n - i - 1)),
                ("first", .bool(i == 0)), ("last", .bool(i == n - 1)), ("length", .int(n)),
                ("depth", .int(1)), ("depth0", .int(0)),
            ]
            loop.append(("previtem", i > 0 ? items[i - 1] : .undefined("loop.previtem")))
            loop.append(("nextitem", i + 1 < n ? items[i + 1] : .undefined("loop.nextitem")))
            assign("loop", .dict(loop))
            if try render(body) == .breakLoop { break }
        }
        return .normal
    }

    func iterate(_ v: JinjaValue, _ pos: JinjaPosition) throws -> [JinjaValue] {
        switch v {
        case .list(let a): return a
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw error(pos, "cannot loop over \(v.typeName)")
        }
    }

    // MARK: expressions

    mutating func eval(_ e: JinjaExpr) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n, _): return lookup(n)
        case .list(let items): return .list(try items.map { try eval($0) })
        case .tuple(let items): return .list(try items.map { try eval($0) })
        case .dict(let pairs):
            var d: [(String, JinjaValue)] = []
            for (ke, ve) in pairs {
                guard case .string(let key) = try eval(ke) else { throw QLoraError.unsupported("chat template: dict keys other than strings") }
                let v = try eval(ve)
                if let k = d.firstIndex(where: { $0.0 == key }) { d[k].1 = v } else { d.append((key, v)) }
            }
            return .dict(d)
        case let .attribute(object, name, pos):
            return try attribute(try eval(object), name, pos)
        case let .item(object, index, pos):
            return try item(try eval(object), try eval(index), pos)
        case let .slice(object, lo, hi, step, pos):
            return try slice(try eval(object), try lo.map { try eval($0) }, try hi.map { try eval($0) },
                             try step.map { try eval($0) }, pos)
        case let .call(callee, args, kwargs, pos):
            let f = try eval(callee)
            let a = try args.map { try eval($0) }
            let kw = try kwargs.map { ($0.0, try eval($0.1)) }
            return try call(f, a, kw, pos)
        case let .filter(value, name, args, kwargs, pos):
            let v = try eval(value)
            let a = try args.map { try eval($0) }
            let kw = try kwargs.map { ($0.0, try eval($0.1)) }
            return try JinjaBuiltins.filter(name, v, a, kw, pos, &self)
        case let .test(value, name, args, negated, pos):
            let v = try eval(value)
            let a = try args.map { try eval($0) }
            return .bool(try JinjaBuiltins.test(name, v, a, pos) != negated)
        case .not(let x): return .bool(!(try eval(x).truthy))
        case let .negate(x, pos):
            switch try eval(x) {
            case .int(let i):
                guard i != Int.min else { throw error(pos, "integer overflow in '-'") }
                return .int(-i)
            case .float(let d): return .float(-d)
            case .bool(let b): return .int(b ? -1 : 0)
            case let v: throw error(pos, "cannot negate \(v.typeName)")
            }
        case let .and(l, r):
            let a = try eval(l)
            return a.truthy ? try eval(r) : a
        case let .or(l, r):
            let a = try eval(l)
            return a.truthy ? a : try eval(r)
        case let .conditional(then, condition, otherwise):
            if try eval(condition).truthy { return try eval(then) }
            return try otherwise.map { try eval($0) } ?? .undefined("(else branch)")
        case let .compare(first, rest, pos):
            var left = try eval(first)
            for (op, re) in rest {
                let right = try eval(re)
                guard try compare(op, left, right, pos) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case let .binary(op, l, r, pos):
            return try binary(op, try eval(l), try eval(r), pos)
        }
    }

    func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ pos: JinjaPosition) throws -> Bool {
        switch op {
        case "==": return JinjaValue.equal(a, b)
        case "!=": return !JinjaValue.equal(a, b)
        case "in", "not in":
            let found: Bool
            switch b {
            case .string(let s):
                guard case .string(let sub) = a else { throw error(pos, "'in <string>' needs a string on the left, got \(a.typeName)") }
                found = sub.isEmpty || s.contains(sub)
            case .list(let items): found = items.contains { JinjaValue.equal($0, a) }
            case .dict(let d):
                if case .string(let key) = a { found = d.contains { $0.0 == key } } else { found = false }
            case .undefined: throw error(pos, "'in' on an undefined value (\(b.typeName))")
            default: throw error(pos, "'in' needs a string, list or dict on the right, got \(b.typeName)")
            }
            return op == "in" ? found : !found
        default:
            let order: Int
            if let x = a.number, let y = b.number { order = x < y ? -1 : x > y ? 1 : 0 }
            else if case .string(let x) = a, case .string(let y) = b {
                order = x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : x == y ? 0 : 1
            } else if case .list(let x) = a, case .list(let y) = b {
                var o = 0
                for (p, q) in zip(x, y) where !JinjaValue.equal(p, q) { o = try compare("<", p, q, pos) ? -1 : 1; break }
                if o == 0 { o = x.count < y.count ? -1 : x.count > y.count ? 1 : 0 }
                order = o
            } else {
                throw error(pos, "'\(op)' between \(a.typeName) and \(b.typeName)")
            }
            switch op {
            case "<": return order < 0
            case ">": return order > 0
            case "<=": return order <= 0
            default: return order >= 0
            }
        }
    }

    func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue, _ pos: JinjaPosition) throws -> JinjaValue {
        if op == "~" { return .string(a.string + b.string) }
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)): return .string(x + y)
        case let ("+", .list(x), .list(y)): return .list(x + y)
        case let ("*", .string(x), .int(n)), let ("*", .int(n), .string(x)):
            guard n <= 0 || x.utf8.count <= JinjaInterpreter.maxSize / n else { throw error(pos, "'*' would make a string over \(JinjaInterpreter.maxSize) bytes") }
            return .string(String(repeating: x, count: max(n, 0)))
        case let ("*", .list(x), .int(n)), let ("*", .int(n), .list(x)):
            guard n <= 0 || x.count <= JinjaInterpreter.maxSize / n else { throw error(pos, "'*' would make a list over \(JinjaInterpreter.maxSize) items") }
            return .list(Array([[JinjaValue]](repeating: x, count: max(n, 0)).joined()))
        case ("%", .string, _): throw unsupported(pos, "'%' string formatting")
        default: break
        }
        let isInt: (JinjaValue) -> Int? = { v in
            switch v { case .int(let i): return i; case .bool(let b): return b ? 1 : 0; default: return nil }
        }
        guard let x = a.number, let y = b.number else {
            throw error(pos, "'\(op)' between \(a.typeName) and \(b.typeName)")
        }
        if let i = isInt(a), let j = isInt(b) {
            switch op {
            case "+", "-", "*":
                // Python's integers do not overflow; ours are 64-bit: an error rather than a wrong value.
                let (r, overflow) = op == "+" ? i.addingReportingOverflow(j) : op == "-" ? i.subtractingReportingOverflow(j) : i.multipliedReportingOverflow(by: j)
                guard !overflow else { throw error(pos, "integer overflow in '\(op)'") }
                return .int(r)
            case "//", "%":
                guard j != 0 else { throw error(pos, "integer division or modulo by zero") }
                guard !(i == Int.min && j == -1) else { throw error(pos, "integer overflow in '\(op)'") }
                var q = i / j
                if (i % j != 0) && ((i < 0) != (j < 0)) { q -= 1 }  // Python floors
                return op == "//" ? .int(q) : .int(i - q * j)
            case "**":
                if j >= 0 {
                    if i == 0 || i == 1 { return .int(j == 0 ? 1 : i) }
                    if i == -1 { return .int(j % 2 == 0 ? 1 : -1) }
                    var r = 1
                    for _ in 0..<j {  // |i| >= 2: at most 63 steps before overflow
                        let (m, overflow) = r.multipliedReportingOverflow(by: i)
                        guard !overflow else { throw error(pos, "integer overflow in '**'") }
                        r = m
                    }
                    return .int(r)
                }
                return .float(pow(Double(i), Double(j)))
            default: break
            }
        }
        switch op {
        case "+": return .float(x + y)
        case "-": return .float(x - y)
        case "*": return .float(x * y)
        case "/":
            guard y != 0 else { throw error(pos, "division by zero") }
            return .float(x / y)
        case "//", "%":
            guard y != 0 else { throw error(pos, "float division or modulo by zero") }
            let q = (x / y).rounded(.down)
            return op == "//" ? .float(q) : .float(x - q * y)
        case "**": return .float(pow(x, y))
        default: throw error(pos, "operator '\(op)'")
        }
    }

    static let stringMethods: Set<String> = ["strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper",
                                             "lower", "title", "capitalize", "replace", "find", "count", "join", "splitlines"]
    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]

    /// jinja2's `obj.name`: a Python attribute (method) first, else the item.
    func attribute(_ v: JinjaValue, _ name: String, _ pos: JinjaPosition) throws -> JinjaValue {
        switch v {
        case .undefined: throw error(pos, "'\(name)' of an undefined value (\(v.typeName))")
        case .string where JinjaInterpreter.stringMethods.contains(name): return .function(name, bound: v)
        case .dict(let d):
            if JinjaInterpreter.dictMethods.contains(name) { return .function(name, bound: v) }
            return d.first { $0.0 == name }?.1 ?? .undefined(name)
        case .namespace(let ns): return ns[name] ?? .undefined(name)
        case .list where name == "index" || name == "count": return .function(name, bound: v)
        case .list where name == "append" || name == "pop" || name == "extend" || name == "insert":
            throw error(pos, "'\(name)' would modify a list (transformers renders in an immutable sandbox)")
        default: return .undefined(name)
        }
    }

    /// jinja2's `obj[key]`: the item first, else a Python attribute.
    func item(_ v: JinjaValue, _ key: JinjaValue, _ pos: JinjaPosition) throws -> JinjaValue {
        switch (v, key) {
        case (.undefined, _): throw error(pos, "item \(key.repr) of an undefined value (\(v.typeName))")
        case let (.list(a), .int(i)):
            let k = i < 0 ? a.count + i : i
            return k >= 0 && k < a.count ? a[k] : .undefined("[\(i)]")
        case let (.string(s), .int(i)):
            let chars = Array(s)
            let k = i < 0 ? chars.count + i : i
            return k >= 0 && k < chars.count ? .string(String(chars[k])) : .undefined("[\(i)]")
        case let (.dict(d), .string(name)):
            if let x = d.first(where: { $0.0 == name }) { return x.1 }
            return try attribute(v, name, pos)
        case let (_, .string(name)): return try attribute(v, name, pos)
        default: return .undefined("[\(key.repr)]")
        }
    }

    func slice(_ v: JinjaValue, _ lo: JinjaValue?, _ hi: JinjaValue?, _ step: JinjaValue?, _ pos: JinjaPosition) throws -> JinjaValue {
        func int(_ x: JinjaValue?) throws -> Int? {
            switch x {
            case nil, .none?: return nil
            case .int(let i)?: return i
            case let other?: throw error(pos, "slice index must be an integer, got \(other.typeName)")
            }
        }
        let st = try int(step) ?? 1
        guard st != 0 else { throw error(pos, "slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ fallback: Int) -> Int {
                guard var i = x else { return fallback }
                if i < 0 { i += n }
                return st > 0 ? min(max(i, 0), n) : min(max(i, -1), n - 1)
            }
            let a = clamp(try int(lo), st > 0 ? 0 : n - 1)
            let b = clamp(try int(hi), st > 0 ? n : -1)
            return Array(stride(from: a, to: b, by: st))
        }
        switch v {
        case .list(let items): return .list(try indices(items.count).map { items[$0] })
        case .string(let s):
            let chars = Array(s)
            return .string(String(try indices(chars.count).map { chars[$0] }))
        default: throw error(pos, "cannot slice \(v.typeName)")
        }
    }

    mutating func call(_ f: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ pos: JinjaPosition) throws -> JinjaValue {
        switch f {
        case let .function(name, bound):
            if let object = bound { return try JinjaBuiltins.method(name, object, args, kwargs, pos) }
            return try JinjaBuiltins.global(name, args, kwargs, pos)
        case let .macro(name, parameters, body):
            guard scopes.count < 100 else { throw error(pos, "macro '\(name)': calls nested more than 100 deep") }
            guard args.count <= parameters.count else { throw error(pos, "macro '\(name)' takes \(parameters.count) arguments, got \(args.count)") }
            var scope: [String: JinjaValue] = [:]
            for (k, p) in parameters.enumerated() {
                if k < args.count { scope[p.0] = args[k] }
                else if let kw = kwargs.first(where: { $0.0 == p.0 }) { scope[p.0] = kw.1 }
                else if let d = p.1 { scope[p.0] = try eval(d) }
                else { scope[p.0] = .undefined(p.0) }
            }
            let saved = output
            output = ""
            scopes.append(scope)
            defer { scopes.removeLast() }
            _ = try render(body)
            let result = output
            output = saved
            return .string(result)
        default:
            throw error(pos, "\(f.typeName) is not callable")
        }
    }
}
