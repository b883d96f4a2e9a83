import Foundation

/// Serializes `JSONValue` byte-for-byte like Python's `json.dumps` (ensure_ascii=True, floats as
/// `repr`). bitsandbytes writes its quant state with `json.dumps(d)` and PEFT its config with
/// `json.dumps(d, indent=2, sort_keys=True)`, so matching Python keeps our files identical to theirs.
extension JSONValue {
    /// `indent: nil` gives separators ", " and ": " on one line; an indent gives one item per line.
    public func pythonDumps(indent: Int? = nil) -> String {
        var out = ""
        write(to: &out, indent: indent, level: 0)
        return out
    }

    private func write(to out: inout String, indent: Int?, level: Int) {
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .int(i): out += String(i)
        case let .number(d, _): out += pythonFloatRepr(d)
        case let .string(s): out += pythonQuoted(s)
        case let .array(items):
            writeContainer(items.map { (nil, $0) }, open: "[", close: "]", to: &out, indent: indent, level: level)
        case let .object(members):
            writeContainer(members.map { ($0.key, $0.value) }, open: "{", close: "}", to: &out, indent: indent, level: level)
        }
    }

    private func writeContainer(_ items: [(String?, JSONValue)], open: String, close: String,
                                to out: inout String, indent: Int?, level: Int) {
        guard !items.isEmpty else { out += open + close; return }
        out += open
        let inner = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) } ?? ""
        for (i, (key, value)) in items.enumerated() {
            if i > 0 { out += indent == nil ? ", " : "," }
            out += inner
            if let key { out += pythonQuoted(key) + ": " }
            value.write(to: &out, indent: indent, level: level + 1)
        }
        if let indent { out += "\n" + String(repeating: " ", count: indent * level) }
        out += close
    }
}

/// A JSON string literal as Python's json.dumps writes it with ensure_ascii=True.
func pythonQuoted(_ s: String) -> String {
    var out = "\""
    for unit in s.utf16 {
        switch unit {
        case 0x22: out += "\\\""
        case 0x5C: out += "\\\\"
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case 0x08: out += "\\b"
        case 0x0C: out += "\\f"
        case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(UInt8(unit)))
        default:
            let hex = String(unit, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        }
    }
    return out + "\""
}

/// Python's `repr(float)`: the shortest digits that round-trip (the same digits Swift's
/// `description` finds), in fixed notation when the decimal exponent is in [-4, 16), otherwise
/// scientific with a signed, at least two-digit exponent. json.dumps spells the non-finite
/// values NaN, Infinity and -Infinity.
public func pythonFloatRepr(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
    let sign = value.sign == .minus ? "-" : ""
    if value == 0 { return sign + "0.0" }
    // Split Swift's shortest representation into digits and a decimal point position.
    let text = Swift.abs(value).description
    let parts = text.split(separator: "e", maxSplits: 1)
    let mantissa = String(parts[0])
    let exponent = parts.count > 1 ? Int(parts[1])! : 0
    let dot = mantissa.firstIndex(of: ".")
    let intDigits = dot.map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count
    var digits = Array(mantissa.replacingOccurrences(of: ".", with: ""))
    var decpt = intDigits + exponent  // value = 0.d1d2d3… × 10^decpt
    while digits.first == "0" { digits.removeFirst(); decpt -= 1 }
    while digits.count > 1, digits.last == "0" { digits.removeLast() }
    let d = String(digits)
    if decpt > -4, decpt <= 16 {
        if decpt <= 0 { return sign + "0." + String(repeating: "0", count: -decpt) + d }
        if decpt < d.count { return sign + String(d.prefix(decpt)) + "." + String(d.dropFirst(decpt)) }
        return sign + d + String(repeating: "0", count: decpt - d.count) + ".0"
    }
    let exp = decpt - 1
    let expText = String(Swift.abs(exp))
    let mant = d.count > 1 ? String(d.prefix(1)) + "." + String(d.dropFirst()) : d
    return sign + mant + "e" + (exp < 0 ? "-" : "+") + (expText.count < 2 ? "0" : "") + expText
}
