import Foundation

/// The filters, tests, global functions and methods chat templates call, with jinja2 / Python
/// semantics. Anything else is an error naming it and its position.
enum JinjaBuiltins {
    static func error(_ pos: JinjaPosition, _ what: String) -> QLoraError { .invalidArgument("chat template \(pos): \(what)") }
    static func unsupported(_ pos: JinjaPosition, _ what: String) -> QLoraError {
        .unsupported("chat template \(pos): \(what) is not supported by this Jinja interpreter")
    }

    /// Python's str.isspace() characters (what str.strip() removes by default).
    static func isSpace(_ c: Character) -> Bool { c.isWhitespace }

    static func strip(_ s: String, _ chars: String?, left: Bool, right: Bool) -> String {
        let remove: (Character) -> Bool = { c in chars.map { $0.contains(c) } ?? isSpace(c) }
        var sub = Substring(s)
        if left { sub = sub.drop(while: remove) }
        if right { while let l = sub.last, remove(l) { sub = sub.dropLast() } }
        return String(sub)
    }

    static func str(_ v: JinjaValue?, _ what: String, _ pos: JinjaPosition) throws -> String {
        guard case .string(let s)? = v else { throw error(pos, "\(what) expects a string, got \(v?.typeName ?? "nothing")") }
        return s
    }

    static func arg(_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ k: Int, _ name: String) -> JinjaValue? {
        k < args.count ? args[k] : kwargs.first { $0.0 == name }?.1
    }

    // MARK: filters

    static func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                       _ pos: JinjaPosition, _ interp: inout JinjaInterpreter) throws -> JinjaValue {
        switch name {
        case "trim":
            return .string(strip(v.string, try arg(args, kwargs, 0, "chars").map { try str($0, "trim", pos) }, left: true, right: true))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .list(let a): return .int(a.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw error(pos, "'\(name)' of \(v.typeName)")
            }
        case "tojson":
            let indent: Int?
            switch arg(args, kwargs, 0, "indent") {
            case nil, .none?: indent = nil
            case .int(let i)?: indent = i
            case let other?: throw error(pos, "tojson indent must be an integer, got \(other.typeName)")
            }
            var separators: (String, String)? = nil
            if case .list(let s)? = arg([], kwargs, 0, "separators"), s.count == 2, case .string(let a) = s[0], case .string(let b) = s[1] {
                separators = (a, b)
            }
            let sortKeys = arg([], kwargs, 0, "sort_keys")?.truthy ?? false
            let ascii = arg([], kwargs, 0, "ensure_ascii")?.truthy ?? false
            do { return .string(try v.json(indent: indent, sortKeys: sortKeys, ensureASCII: ascii, separators: separators)) }
            catch { throw JinjaBuiltins.error(pos, "\(error)") }
        case "upper": return .string(v.string.uppercased())
        case "lower": return .string(v.string.lowercased())
        case "capitalize":
            let s = v.string
            return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
        case "title": return .string(title(v.string))
        case "string": return .string(v.string)
        case "safe": return v
        case "default", "d":
            let fallback = arg(args, kwargs, 0, "default_value") ?? .string("")
            let boolean = arg(args, kwargs, 1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "first", "last":
            switch v {
            case .list(let a): return (name == "first" ? a.first : a.last) ?? .undefined(name)
            case .string(let s): return (name == "first" ? s.first : s.last).map { .string(String($0)) } ?? .undefined(name)
            default: throw error(pos, "'\(name)' of \(v.typeName)")
            }
        case "join":
            let sep = try arg(args, kwargs, 0, "d").map { try str($0, "join", pos) } ?? ""
            let items = try interp.iterate(v, pos)
            if let attr = arg(args, kwargs, 1, "attribute") {
                return .string(try items.map { try interp.item($0, attr, pos).string }.joined(separator: sep))
            }
            return .string(items.map(\.string).joined(separator: sep))
        case "list": return .list(try interp.iterate(v, pos))
        case "items":
            guard case .dict(let d) = v else {
                if v.isUndefined { return .list([]) }
                throw error(pos, "'items' of \(v.typeName)")
            }
            return .list(d.map { .list([.string($0.0), $0.1]) })
        case "reverse":
            switch v {
            case .string(let s): return .string(String(s.reversed()))
            default: return .list(try interp.iterate(v, pos).reversed())
            }
        case "replace":
            let old = try str(arg(args, kwargs, 0, "old"), "replace", pos)
            let new = try str(arg(args, kwargs, 1, "new"), "replace", pos)
            return .string(v.string.replacingOccurrences(of: old, with: new))
        case "int":
            switch v {
            case .int: return v
            case .bool(let b): return .int(b ? 1 : 0)
            case .float(let d): return .int(Int(exactly: d.rounded(.towardZero)) ?? 0)
            case .string(let s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(exactly: (Double(s) ?? 0).rounded(.towardZero)) ?? 0)
            default: return .int(0)
            }
        case "float":
            switch v {
            case .string(let s): return .float(Double(s.trimmingCharacters(in: .whitespaces)) ?? 0)
            default: return .float(v.number ?? 0)
            }
        case "abs":
            switch v {
            case .int(let i):
                guard let a = Int(exactly: i.magnitude) else { throw error(pos, "abs(\(i)) does not fit in 64 bits") }
                return .int(a)
            case .float(let d): return .float(abs(d))
            default: throw error(pos, "'abs' of \(v.typeName)")
            }
        case "unique":
            var out: [JinjaValue] = []
            for x in try interp.iterate(v, pos) where !out.contains(where: { JinjaValue.equal($0, x) }) { out.append(x) }
            return .list(out)
        case "selectattr", "rejectattr", "select", "reject", "map":
            return try selectOrMap(name, v, args, kwargs, pos, &interp)
        case "indent":
            let width = arg(args, kwargs, 0, "width")
            let prefix: String
            switch width { case .int(let w)?: prefix = String(repeating: " ", count: w); case .string(let s)?: prefix = s; default: prefix = "    " }
            let first = arg(args, kwargs, 1, "first")?.truthy ?? false
            let blank = arg(args, kwargs, 2, "blank")?.truthy ?? false
            let lines = v.string.components(separatedBy: "\n")
            return .string(lines.enumerated().map { k, line in
                (k == 0 && !first) || (line.isEmpty && !blank) ? line : prefix + line
            }.joined(separator: "\n"))
        default:
            throw unsupported(pos, "the filter '\(name)'")
        }
    }

    /// Python's str.title(): upper-case after a non-letter, lower-case after a letter.
    static func title(_ s: String) -> String {
        var out = ""
        var previousIsLetter = false
        for c in s {
            out += previousIsLetter ? c.lowercased() : c.uppercased()
            previousIsLetter = c.isLetter
        }
        return out
    }

    static func selectOrMap(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                            _ pos: JinjaPosition, _ interp: inout JinjaInterpreter) throws -> JinjaValue {
        let items = try interp.iterate(v, pos)
        if name == "map" {
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.first { $0.0 == "default" }?.1
                return .list(try items.map { x in
                    let r = try interp.item(x, attr, pos)
                    return r.isUndefined ? fallback ?? r : r
                })
            }
            guard case .string(let filterName)? = args.first else { throw error(pos, "'map' needs a filter name or attribute=") }
            return .list(try items.map { try filter(filterName, $0, Array(args.dropFirst()), [], pos, &interp) })
        }
        let byAttribute = name.hasSuffix("attr")
        let keep = name.hasPrefix("select")
        var rest = args
        var attr: JinjaValue? = nil
        if byAttribute {
            guard !rest.isEmpty else { throw error(pos, "'\(name)' needs an attribute name") }
            attr = rest.removeFirst()
        }
        var out: [JinjaValue] = []
        for x in items {
            let subject = try attr.map { try interp.item(x, $0, pos) } ?? x
            let passed: Bool
            if case .string(let testName)? = rest.first { passed = try test(testName, subject, Array(rest.dropFirst()), pos) }
            else { passed = subject.truthy }
            if passed == keep { out.append(x) }
        }
        return .list(out)
    }

    // MARK: tests

    static func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ pos: JinjaPosition) throws -> Bool {
        func other() throws -> JinjaValue {
            guard let a = args.first else { throw error(pos, "the test '\(name)' needs an argument") }
            return a
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "string": if case .string = v { return true }; return false
        case "number": if case .int = v { return true }; if case .float = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .float = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "sequence", "iterable":
            switch v { case .list, .string, .dict: return true; default: return false }
        case "callable": switch v { case .function, .macro: return true; default: return false }
        case "odd", "even", "divisibleby":
            guard case .int(let i) = v else { throw error(pos, "the test '\(name)' needs an integer, got \(v.typeName)") }
            if name == "odd" { return i % 2 != 0 }
            if name == "even" { return i % 2 == 0 }
            guard case .int(let d) = try other(), d != 0 else { throw error(pos, "divisibleby needs a non-zero integer") }
            return i % d == 0
        case "eq", "equalto", "==": return JinjaValue.equal(v, try other())
        case "ne", "!=": return !JinjaValue.equal(v, try other())
        case "sameas":
            let o = try other()
            switch (v, o) {
            case (.none, .none): return true
            case let (.bool(a), .bool(b)): return a == b
            default: return false
            }
        case "lower": return v.string == v.string.lowercased()
        case "upper": return v.string == v.string.uppercased()
        case "in":
            let o = try other()
            switch o {
            case .list(let a): return a.contains { JinjaValue.equal($0, v) }
            case .string(let s): if case .string(let sub) = v { return sub.isEmpty || s.contains(sub) }; return false
            case .dict(let d): if case .string(let k) = v { return d.contains { $0.0 == k } }; return false
            default: throw error(pos, "the test 'in' needs a container, got \(o.typeName)")
            }
        case "lt", "<", "gt", ">", "le", "<=", "ge", ">=":
            guard let a = v.number, let b = try other().number else { throw error(pos, "the test '\(name)' needs numbers") }
            switch name { case "lt", "<": return a < b; case "gt", ">": return a > b; case "le", "<=": return a <= b; default: return a >= b }
        default:
            throw unsupported(pos, "the test '\(name)'")
        }
    }

    // MARK: global functions

    static func global(_ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ pos: JinjaPosition) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            throw QLoraError.invalidArgument("the chat template raised an exception (\(pos)): \(args.first?.string ?? "")")
        case "namespace", "dict":
            var attrs: [(String, JinjaValue)] = []
            if case .dict(let d)? = args.first { attrs = d }
            for (k, v) in kwargs {
                if let i = attrs.firstIndex(where: { $0.0 == k }) { attrs[i].1 = v } else { attrs.append((k, v)) }
            }
            return name == "dict" ? .dict(attrs) : .namespace(JinjaNamespace(attrs))
        case "range":
            let ints = try args.map { v -> Int in
                guard case .int(let i) = v else { throw error(pos, "range() takes integers, got \(v.typeName)") }
                return i
            }
            let (lo, hi, step): (Int, Int, Int)
            switch ints.count {
            case 1: (lo, hi, step) = (0, ints[0], 1)
            case 2: (lo, hi, step) = (ints[0], ints[1], 1)
            case 3: (lo, hi, step) = (ints[0], ints[1], ints[2])
            default: throw error(pos, "range() takes 1 to 3 arguments")
            }
            guard step != 0 else { throw error(pos, "range() step must not be zero") }
            let span = step > 0 ? Double(hi) - Double(lo) : Double(lo) - Double(hi)
            let count = max(0, (span / Double(step).magnitude).rounded(.up))
            guard count <= Double(JinjaInterpreter.maxSize) else { throw error(pos, "range() of \(count) numbers is over the limit \(JinjaInterpreter.maxSize)") }
            return .list(stride(from: lo, to: hi, by: step).map { .int($0) })
        case "strftime_now":
            let format = try str(args.first, "strftime_now", pos)
            var t = time(nil)
            var tmv = tm()
            localtime_r(&t, &tmv)
            var buf = [Int8](repeating: 0, count: 256)
            let n = strftime(&buf, buf.count, format, &tmv)
            return .string(String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        default:
            throw unsupported(pos, "the function '\(name)'")
        }
    }

    // MARK: methods

    static func method(_ name: String, _ object: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                       _ pos: JinjaPosition) throws -> JinjaValue {
        switch object {
        case .string(let s):
            let a0 = try args.first.map { v -> String? in v.isNone ? nil : try str(v, name, pos) } ?? nil
            switch name {
            case "strip": return .string(strip(s, a0, left: true, right: true))
            case "lstrip": return .string(strip(s, a0, left: true, right: false))
            case "rstrip": return .string(strip(s, a0, left: false, right: true))
            case "upper": return .string(s.uppercased())
            case "lower": return .string(s.lowercased())
            case "title": return .string(title(s))
            case "capitalize": return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
            case "startswith", "endswith":
                var prefixes: [String] = []
                if case .list(let l)? = args.first { prefixes = try l.map { try str($0, name, pos) } }
                else { prefixes = [try str(args.first, name, pos)] }
                return .bool(prefixes.contains { name == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
            case "replace":
                return .string(s.replacingOccurrences(of: try str(args.first, name, pos),
                                                      with: try str(args.count > 1 ? args[1] : nil, name, pos)))
            case "split":
                if let sep = a0 {
                    guard !sep.isEmpty else { throw error(pos, "split: empty separator") }
                    return .list(s.components(separatedBy: sep).map { .string($0) })
                }
                return .list(s.split(whereSeparator: isSpace).map { .string(String($0)) })
            case "splitlines": return .list(s.split(separator: "\n", omittingEmptySubsequences: false).map { .string(String($0)) }.dropLast(s.hasSuffix("\n") ? 1 : 0))
            case "find":
                let sub = try str(args.first, name, pos)
                guard let r = s.range(of: sub) else { return .int(-1) }
                return .int(s.distance(from: s.startIndex, to: r.lowerBound))
            case "count":
                let sub = try str(args.first, name, pos)
                return .int(sub.isEmpty ? s.count + 1 : s.components(separatedBy: sub).count - 1)
            case "join":
                guard case .list(let items)? = args.first else { throw error(pos, "join expects a list") }
                return .string(try items.map { try str($0, "join", pos) }.joined(separator: s))
            default: break
            }
        case .dict(let d):
            switch name {
            case "items": return .list(d.map { .list([.string($0.0), $0.1]) })
            case "keys": return .list(d.map { .string($0.0) })
            case "values": return .list(d.map { $0.1 })
            case "get":
                let key = try str(args.first, "get", pos)
                return d.first { $0.0 == key }?.1 ?? (args.count > 1 ? args[1] : .none)
            default: break
            }
        case .list(let a):
            switch name {
            case "count": return .int(a.filter { JinjaValue.equal($0, args.first ?? .none) }.count)
            case "index":
                guard let k = a.firstIndex(where: { JinjaValue.equal($0, args.first ?? .none) }) else {
                    throw error(pos, "index: \(args.first?.repr ?? "") is not in the list")
                }
                return .int(k)
            default: break
            }
        default: break
        }
        throw unsupported(pos, "the method '\(name)' of \(object.typeName)")
    }
}
