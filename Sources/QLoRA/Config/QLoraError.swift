/// Every failure the library reports. Each message says what went wrong and where.
public enum QLoraError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A configuration value is out of range (`field`, the reason).
    case invalidConfig(field: String, reason: String)
    /// A shape disagrees with what the operation needs.
    case shapeMismatch(context: String, expected: [Int], actual: [Int])
    /// Quantization could not proceed (NaN/Inf, bad block size, inconsistent state).
    case quantization(tensor: String, reason: String)
    /// A file is not what it claims to be: `field` names the tensor, JSON path or header field.
    case malformedFile(file: String, field: String, reason: String)
    /// Reading or writing a file failed.
    case io(file: String, reason: String)
    /// The request is valid but not supported (yet).
    case unsupported(String)
    /// An argument is invalid (unknown input name, missing input, bad graph).
    case invalidArgument(String)
    /// A valid graph file does not fit the checkpoint, inputs or --dim values it is used with:
    /// `field` is the graph's JSON path.
    case graphMismatch(graph: String, field: String, reason: String)
    /// A valid file lacks a tensor something needs; `suggestions` are near names it does have.
    case missingTensor(file: String, name: String, neededBy: String, suggestions: [String])
    /// The file is of another kind altogether (e.g. a JSON file given as a safetensors file).
    case wrongFileType(file: String, expected: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidConfig(field, reason):
            return "invalid configuration: \(field): \(reason)"
        case let .shapeMismatch(context, expected, actual):
            // Symbolic dimensions (stored as negative numbers) are shown by name.
            func show(_ shape: [Int]) -> String { "[" + shape.map(SymbolicDimension.describe).joined(separator: ", ") + "]" }
            return "shape mismatch in \(context): expected \(show(expected)), got \(show(actual))"
        case let .quantization(tensor, reason):
            return "quantization of '\(tensor)' failed: \(reason)"
        case let .malformedFile(file, field, reason):
            return "malformed file \(file): \(field): \(reason)"
        case let .io(file, reason):
            return "I/O error on \(file): \(reason)"
        case let .unsupported(what):
            return "unsupported: \(what)"
        case let .invalidArgument(what):
            return "invalid argument: \(what)"
        case let .graphMismatch(graph, field, reason):
            return "\(graph) at \(field): \(reason)"
        case let .missingTensor(file, name, neededBy, suggestions):
            let hint = suggestions.isEmpty ? "" : "; did you mean " + suggestions.map { "'\($0)'" }.joined(separator: " or ") + "?"
            return "\(file): no such tensor '\(name)' (needed by \(neededBy))\(hint)"
        case let .wrongFileType(file, expected, reason):
            return "\(file) is not a \(expected) file: \(reason)"
        }
    }
}

extension QLoraError: CustomDebugStringConvertible {
    public var debugDescription: String { description }
}
