import Foundation

/// A `namespace(...)` object: the one mutable value of a template (`{% set ns.x = ... %}`).
final class JinjaNamespace: @unchecked Sendable {
    var attributes: [(String, JinjaValue)]
    init(_ attributes: [(String, JinjaValue)]) { self.attributes = attributes }
    subscript(name: String) -> JinjaValue? {
        get { attributes.first { $0.0 == name }?.1 }
        set {
            if let k = attributes.firstIndex(where: { $0.0 == name }) { attributes[k].1 = newValue ?? .none }
            else { attributes.append((name, newValue ?? .none)) }
        }
    }
}

/// A value in a template, with Python's semantics where transformers' rendering shows them
/// (truthiness, `str()`, equality, `json.dumps`).
indirect enum JinjaValue: @unchecked Sendable {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case list([JinjaValue])
    /// A dict with string keys, in insertion order.
    case dict([(String, JinjaValue)])
    case namespace(JinjaNamespace)
    /// A global function or a method bound to a value (`"a b".split`).
    case function(String, bound: JinjaValue?)
    case macro(name: String, parameters: [(String, JinjaExpr?)], body: [JinjaNode])

    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(i)
        case .number(let d, _): self = .float(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .list(a.map(JinjaValue.init(json:)))
        case .object(let members): self = .dict(members.map { ($0.key, JinjaValue(json: $0.value)) })
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }
    var isNone: Bool { if case .none = self { return true } else { return false } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .float(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let a): return !a.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function, .macro: return true
        }
    }

    var typeName: String {
        switch self {
        case .undefined(let n): return "undefined ('\(n)')"
        case .none: return "none"
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .float: return "a float"
        case .string: return "a string"
        case .list: return "a list"
        case .dict: return "a dict"
        case .namespace: return "a namespace"
        case .function(let n, _): return "the function '\(n)'"
        case .macro(let n, _, _): return "the macro '\(n)'"
        }
    }

    /// Python's `str()` (what `{{ }}` prints).
    var string: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's `repr()` (how values inside lists and dicts print).
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .float(let d): return JinjaValue.pythonFloat(d)
        case .string(let s):
            let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
            var out = String(quote)
            for c in s.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if Character(c) == quote { out += "\\" + String(quote) }
                    else if c.value < 0x20 || c.value == 0x7F { out += String(format: "\\x%02x", c.value) }
                    else { out.unicodeScalars.append(c) }
                }
            }
            return out + String(quote)
        case .list(let a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { JinjaValue.string($0.0).repr + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .function(let n, _): return "<function \(n)>"
        case .macro(let n, _, _): return "<Macro '\(n)'>"
        }
    }

    /// Python's float repr: shortest round-trip digits, "1.0" for integral values, exponent
    /// form below 1e-4 and from 1e16.
    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        var s = "\(d)"  // Swift prints the shortest round-trip digits too
        if let e = s.firstIndex(of: "e") {
            // Swift: "1e-05" / "1e+16"; Python: "1e-05" / "1e+16": the same form.
            let mantissa = s[..<e]
            if mantissa.hasSuffix(".0") { s = String(mantissa.dropLast(2)) + s[e...] }
            return s
        }
        let a = abs(d)
        if a != 0 && (a < 1e-4 || a >= 1e16) {
            // Python switches to exponent form here; Swift at other thresholds.
            let digits = String(format: "%.17g", d)
            if let back = Double(digits), back == d {
                for p in 1...17 {
                    let t = String(format: "%.\(p - 1)e", d)
                    if Double(t) == d {
                        // "1.5e-05" form: strip trailing zeros of the mantissa, two-digit exponent.
                        let parts = t.split(separator: "e")
                        var m = String(parts[0])
                        if m.contains(".") { while m.hasSuffix("0") { m.removeLast() }; if m.hasSuffix(".") { m.removeLast() } }
                        return m + "e" + parts[1]
                    }
                }
            }
        }
        return s
    }

    /// Python `==` between JSON-like values (1 == 1.0 == True).
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x == y
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(x), .dict(y)):
            return x.count == y.count && x.allSatisfy { kv in y.contains { $0.0 == kv.0 && equal($0.1, kv.1) } }
        case let (.namespace(x), .namespace(y)): return x === y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// The value as a number (bools count as 0/1, as in Python).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .float(let d): return d
        default: return nil
        }
    }

    /// Python's `json.dumps` (transformers' `tojson`: ensure_ascii=False by default).
    func json(indent: Int?, level: Int = 0, sortKeys: Bool = false, ensureASCII: Bool = false,
              separators: (String, String)? = nil) throws -> String {
        let (itemSep, keySep) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        func nl(_ l: Int) -> String { indent.map { "\n" + String(repeating: " ", count: $0 * l) } ?? "" }
        switch self {
        case .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .float(let d):
            if d.isNaN { return "NaN" }
            if d.isInfinite { return d > 0 ? "Infinity" : "-Infinity" }
            return JinjaValue.pythonFloat(d)
        case .string(let s): return JinjaValue.jsonString(s, ensureASCII: ensureASCII)
        case .list(let a):
            if a.isEmpty { return "[]" }
            let items = try a.map { try $0.json(indent: indent, level: level + 1, sortKeys: sortKeys, ensureASCII: ensureASCII, separators: separators) }
            return "[" + nl(level + 1) + items.joined(separator: itemSep + nl(level + 1)) + nl(level) + "]"
        case .dict(let d):
            if d.isEmpty { return "{}" }
            let members = sortKeys ? d.sorted { $0.0 < $1.0 } : d
            let items = try members.map {
                JinjaValue.jsonString($0.0, ensureASCII: ensureASCII) + keySep
                    + (try $0.1.json(indent: indent, level: level + 1, sortKeys: sortKeys, ensureASCII: ensureASCII, separators: separators))
            }
            return "{" + nl(level + 1) + items.joined(separator: itemSep + nl(level + 1)) + nl(level) + "}"
        default:
            throw QLoraError.invalidArgument("tojson: \(typeName) is not JSON serializable")
        }
    }

    static func jsonString(_ s: String, ensureASCII: Bool) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if c.value < 0x20 { out += String(format: "\\u%04x", c.value) }
                else if ensureASCII && c.value > 0x7F {
                    if c.value > 0xFFFF {
                        let v = c.value - 0x10000
                        out += String(format: "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
                    } else { out += String(format: "\\u%04x", c.value) }
                } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }
}
