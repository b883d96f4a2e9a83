/// A dense, row-major tensor of Float32 values. A value type: copies are cheap until mutated.
public struct Tensor: Sendable, Equatable, CustomStringConvertible {
    public let shape: [Int]
    public private(set) var scalars: [Float]

    /// Throws `shapeMismatch` when the scalar count is not the product of the shape, and
    /// `invalidArgument` for a negative dimension.
    public init(shape: [Int], scalars: [Float]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else {
            throw QLoraError.invalidArgument("tensor shape \(shape) has a negative dimension")
        }
        let count = try Tensor.elementCount(shape)
        guard count == scalars.count else {
            throw QLoraError.shapeMismatch(context: "Tensor(shape:scalars:) element count",
                                           expected: [count], actual: [scalars.count])
        }
        self.shape = shape
        self.scalars = scalars
    }

    /// Internal initializer for values whose count is already known to match.
    init(uncheckedShape shape: [Int], scalars: [Float]) {
        precondition(shape.reduce(1, *) == scalars.count)
        self.shape = shape
        self.scalars = scalars
    }

    public static func zeros(shape: [Int]) -> Tensor {
        let count = shape.reduce(1) { $0 * max($1, 0) }
        return Tensor(uncheckedShape: shape.map { max($0, 0) }, scalars: [Float](repeating: 0, count: count))
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// The same scalars viewed with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) throws -> Tensor {
        try Tensor(shape: newShape, scalars: scalars)
    }

    /// Index of the first NaN or infinity, if any.
    public var firstNonFiniteIndex: Int? {
        scalars.firstIndex { !$0.isFinite }
    }

    /// Product of the dimensions, throwing on overflow.
    static func elementCount(_ shape: [Int]) throws -> Int {
        var count = 1
        for d in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw QLoraError.invalidArgument("tensor shape \(shape) is too large") }
            count = p
        }
        return count
    }

    public var description: String {
        let preview = scalars.prefix(8).map { String($0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(preview)\(scalars.count > 8 ? ", …" : "")])"
    }
}
