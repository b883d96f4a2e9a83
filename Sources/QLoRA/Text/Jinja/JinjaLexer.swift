/// A position in a template (1-based line and column, in characters).
public struct JinjaPosition: Equatable, Sendable, CustomStringConvertible {
    public var line: Int
    public var column: Int
    public var description: String { "\(line):\(column)" }
}

/// One token of a template: raw text between tags, a tag's delimiters, or a token of an
/// expression inside a tag.
enum JinjaToken: Equatable {
    case text(String)
    case variableBegin, variableEnd, blockBegin, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case float(Double)
    /// Operators and punctuation: + - * / // % ** ~ == != < > <= >= = ( ) [ ] { } , . : |
    case op(String)
}

/// Splits a template into tokens as jinja2's lexer does with transformers' settings
/// (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False): newlines normalized to
/// "\n" and one trailing newline dropped; `{%-` / `-%}` (and `{{-`, `-}}`, `{#-`, `-#}`) strip all
/// whitespace on that side; a block or comment tag alone on its line after spaces loses them
/// (lstrip_blocks, unless `{%+`); the newline right after `%}` or `#}` is dropped (trim_blocks,
/// unless `+%}`).
struct JinjaLexer {
    let chars: [Character]
    var i = 0
    var tokens: [(JinjaToken, JinjaPosition)] = []
    /// Character offset at which each line starts.
    var lineStarts: [Int] = [0]

    static func tokenize(_ source: String) throws -> [(JinjaToken, JinjaPosition)] {
        var s = source.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if s.hasSuffix("\n") { s.removeLast() }
        var lexer = JinjaLexer(chars: Array(s))
        for (k, c) in lexer.chars.enumerated() where c == "\n" { lexer.lineStarts.append(k + 1) }
        try lexer.run()
        return lexer.tokens
    }

    func position(_ offset: Int) -> JinjaPosition {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return JinjaPosition(line: lo + 1, column: offset - lineStarts[lo] + 1)
    }

    func error(_ offset: Int, _ what: String) -> QLoraError {
        .invalidArgument("chat template \(position(offset)): \(what)")
    }

    func at(_ k: Int, _ s: String) -> Bool {
        var j = k
        for c in s { guard j < chars.count, chars[j] == c else { return false }; j += 1 }
        return true
    }

    mutating func run() throws {
        var lineStarting = true  // the previous tag's match ended with a newline (or nothing came yet)
        while i < chars.count {
            // The next tag opening.
            var k = i
            var kind: Character? = nil
            while k + 1 < chars.count {
                if chars[k] == "{", chars[k + 1] == "{" || chars[k + 1] == "%" || chars[k + 1] == "#" { kind = chars[k + 1]; break }
                k += 1
            }
            guard let tag = kind else {
                tokens.append((.text(String(chars[i...])), position(i)))
                return
            }
            var text = Array(chars[i..<k])
            let sign: Character? = k + 2 < chars.count && (chars[k + 2] == "-" || chars[k + 2] == "+") ? chars[k + 2] : nil
            if sign == "-" {
                while let last = text.last, last.isWhitespace { text.removeLast() }
            } else if sign != "+" && tag != "{" {
                let lastNewline = text.lastIndex(of: "\n").map { $0 + 1 } ?? 0
                if (lastNewline > 0 || lineStarting) && lastNewline < text.count
                    && text[lastNewline...].allSatisfy({ $0.isWhitespace }) {
                    text.removeSubrange(lastNewline...)
                }
            }
            if !text.isEmpty { tokens.append((.text(String(text)), position(i))) }
            let open = k
            i = k + 2 + (sign == nil ? 0 : 1)
            switch tag {
            case "#":
                var e = i
                while e + 1 < chars.count && !(chars[e] == "#" && chars[e + 1] == "}") { e += 1 }
                guard e + 1 < chars.count else { throw error(open, "comment '{#' is never closed") }
                let stripAfter = e > i && chars[e - 1] == "-"
                let keep = e > i && chars[e - 1] == "+"
                i = e + 2
                lineStarting = finishTag(stripAfter: stripAfter, trim: !keep)
            case "{":
                tokens.append((.variableBegin, position(open)))
                let (stripAfter, _) = try expression(open: open, close: "}")
                tokens.append((.variableEnd, position(i - 2)))
                lineStarting = finishTag(stripAfter: stripAfter, trim: false)
            default:
                tokens.append((.blockBegin, position(open)))
                let (stripAfter, keep, wasRaw) = try blockTokens(open: open)
                if !wasRaw { tokens.append((.blockEnd, position(i - 2))) }
                lineStarting = finishTag(stripAfter: stripAfter, trim: !keep)
            }
        }
    }

    /// After a tag: `-` strips the whitespace that follows; else trim_blocks drops one newline.
    /// Returns whether what was consumed ended with a newline.
    mutating func finishTag(stripAfter: Bool, trim: Bool) -> Bool {
        var last: Character? = nil
        if stripAfter {
            while i < chars.count && chars[i].isWhitespace { last = chars[i]; i += 1 }
        } else if trim && i < chars.count && chars[i] == "\n" {
            last = "\n"; i += 1
        }
        return last == "\n"
    }

    /// The tokens of a `{% ... %}` tag; `raw` blocks are copied verbatim.
    mutating func blockTokens(open: Int) throws -> (stripAfter: Bool, keep: Bool, wasRaw: Bool) {
        let start = tokens.count
        let r = try expression(open: open, close: "%")
        if tokens.count == start + 1, case .name("raw") = tokens[start].0 {
            tokens.removeLast(2)  // blockBegin, raw
            let contentStart = r.stripAfter ? skipWhitespace(i) : i
            var e = contentStart
            var endTag: (open: Int, stripBefore: Bool)? = nil
            while e + 1 < chars.count {
                if chars[e] == "{" && chars[e + 1] == "%" {
                    var j = e + 2
                    let stripBefore = j < chars.count && chars[j] == "-"
                    if j < chars.count && (chars[j] == "-" || chars[j] == "+") { j += 1 }
                    j = skipWhitespace(j)
                    if at(j, "endraw") { endTag = (e, stripBefore); break }
                }
                e += 1
            }
            guard let end = endTag else { throw error(open, "'raw' block is never closed by 'endraw'") }
            var content = Array(chars[contentStart..<end.open])
            if end.stripBefore { while let l = content.last, l.isWhitespace { content.removeLast() } }
            if !content.isEmpty { tokens.append((.text(String(content)), position(contentStart))) }
            i = end.open + 2 + (end.stripBefore || (end.open + 2 < chars.count && chars[end.open + 2] == "+") ? 1 : 0)
            let mark = tokens.count
            let closing = try expression(open: end.open, close: "%")
            guard tokens.count == mark + 1 else { throw error(end.open, "'endraw' takes no arguments") }
            tokens.removeLast()
            return (closing.stripAfter, closing.keep, true)
        }
        return (r.stripAfter, r.keep, false)
    }

    func skipWhitespace(_ from: Int) -> Int {
        var j = from
        while j < chars.count && chars[j].isWhitespace { j += 1 }
        return j
    }

    /// Expression tokens up to the closing `close` + "}" (at bracket depth 0). Returns whether
    /// the closing delimiter had `-` (strip after) or `+` (no trim_blocks).
    mutating func expression(open: Int, close: Character) throws -> (stripAfter: Bool, keep: Bool) {
        var depth = 0
        while true {
            i = skipWhitespace(i)
            guard i < chars.count else {
                throw error(open, "tag '{\(close == "}" ? "{" : String(close))' is never closed")
            }
            let c = chars[i]
            // The end of the tag.
            if depth == 0 {
                for sign in ["-", "+", ""] where at(i, sign + String(close) + "}") {
                    if close == "}" && sign == "+" { continue }
                    i += sign.count + 2
                    return (sign == "-", sign == "+")
                }
            }
            let pos = position(i)
            if c.isLetter || c == "_" {
                var e = i
                while e < chars.count && (chars[e].isLetter || chars[e].isNumber || chars[e] == "_") { e += 1 }
                tokens.append((.name(String(chars[i..<e])), pos))
                i = e
            } else if c.isASCII && c.isNumber {
                var e = i
                var isFloat = false
                while e < chars.count && (chars[e].isASCII && chars[e].isNumber || chars[e] == "_") { e += 1 }
                if e + 1 < chars.count && chars[e] == "." && chars[e + 1].isASCII && chars[e + 1].isNumber {
                    isFloat = true
                    e += 1
                    while e < chars.count && chars[e].isASCII && chars[e].isNumber { e += 1 }
                }
                if e < chars.count && (chars[e] == "e" || chars[e] == "E") {
                    var j = e + 1
                    if j < chars.count && (chars[j] == "+" || chars[j] == "-") { j += 1 }
                    if j < chars.count && chars[j].isASCII && chars[j].isNumber {
                        isFloat = true
                        e = j
                        while e < chars.count && chars[e].isASCII && chars[e].isNumber { e += 1 }
                    }
                }
                let text = String(chars[i..<e]).replacingOccurrences(of: "_", with: "")
                if isFloat {
                    guard let d = Double(text) else { throw error(i, "bad number '\(text)'") }
                    tokens.append((.float(d), pos))
                } else {
                    guard let n = Int(text) else { throw error(i, "integer '\(text)' is too large") }
                    tokens.append((.int(n), pos))
                }
                i = e
            } else if c == "'" || c == "\"" {
                tokens.append((.string(try stringLiteral()), pos))
            } else {
                let three = ["//", "**", "==", "!=", "<=", ">="]
                if let op = three.first(where: { at(i, $0) }) {
                    tokens.append((.op(op), pos)); i += 2
                } else if "+-*/%~<>=()[]{},.:|".contains(c) {
                    if "([{".contains(c) { depth += 1 }
                    if ")]}".contains(c) {
                        guard depth > 0 else { throw error(i, "unexpected '\(c)'") }
                        depth -= 1
                    }
                    tokens.append((.op(String(c)), pos)); i += 1
                } else {
                    throw error(i, "unexpected character '\(c)'")
                }
            }
        }
    }

    /// A quoted string with Python escapes (\n \t \r \\ \' \" \uXXXX \xXX); `i` is at the quote.
    mutating func stringLiteral() throws -> String {
        let quote = chars[i]
        let start = i
        i += 1
        var out = ""
        while true {
            guard i < chars.count else { throw error(start, "string literal is never closed") }
            let c = chars[i]
            if c == quote { i += 1; return out }
            if c == "\\" && i + 1 < chars.count {
                let e = chars[i + 1]
                i += 2
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\0")
                case "a": out.append("\u{07}")
                case "b": out.append("\u{08}")
                case "f": out.append("\u{0C}")
                case "v": out.append("\u{0B}")
                case "\\", "'", "\"": out.append(e)
                case "\n": break
                case "x", "u", "U":
                    let n = e == "x" ? 2 : e == "u" ? 4 : 8
                    guard i + n <= chars.count, let v = UInt32(String(chars[i..<i + n]), radix: 16),
                          let u = Unicode.Scalar(v) else { throw error(i - 2, "bad escape '\\\(e)'") }
                    out.unicodeScalars.append(u)
                    i += n
                default:
                    out.append("\\"); out.append(e)  // Python keeps unknown escapes
                }
                continue
            }
            out.append(c)
            i += 1
        }
    }
}
