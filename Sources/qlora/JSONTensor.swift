import Foundation
import QLoRA

/// A tensor written as JSON nested arrays of numbers, e.g. [[1, 2], [3, 4]] is [2, 2]. The arrays
/// must be rectangular; errors name the file and the JSON path.
enum JSONTensor {
    static func read(_ data: Data, path: String) throws -> Tensor {
        let root = try JSONValue.parse([UInt8](data), file: path, field: "$")
        var shape: [Int] = []
        var probe = root
        while case let .array(items) = probe {
            shape.append(items.count)
            guard let first = items.first else { break }
            probe = first
        }
        var scalars: [Float] = []
        scalars.reserveCapacity(shape.reduce(1, *))
        func walk(_ v: JSONValue, depth: Int, at: String) throws {
            if depth == shape.count {
                switch v {
                case let .int(n): scalars.append(Float(n))
                case let .number(x, _): scalars.append(Float(x))
                default: throw QLoraError.malformedFile(file: path, field: at, reason: "expected a number, got \(v.kind)")
                }
                return
            }
            guard case let .array(items) = v, items.count == shape[depth] else {
                throw QLoraError.malformedFile(file: path, field: at, reason: "expected an array of \(shape[depth]) items (the arrays must be rectangular, shape \(shape))")
            }
            for (i, item) in items.enumerated() { try walk(item, depth: depth + 1, at: "\(at)[\(i)]") }
        }
        try walk(root, depth: 0, at: "$")
        guard !scalars.isEmpty else { throw QLoraError.malformedFile(file: path, field: "$", reason: "no numbers") }
        return try Tensor(shape: shape.isEmpty ? [1] : shape, scalars: scalars)
    }
}
