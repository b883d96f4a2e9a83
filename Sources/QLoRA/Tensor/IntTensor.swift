/// A dense, row-major tensor of Int32 values: token ids and labels fed to int32 graph inputs.
public struct IntTensor: Sendable, Equatable {
    public let shape: [Int]
    public let scalars: [Int32]

    /// Throws `shapeMismatch` when the scalar count is not the product of the shape.
    public init(shape: [Int], scalars: [Int32]) throws {
        guard shape.allSatisfy({ $0 >= 0 }) else { throw QLoraError.invalidArgument("tensor shape \(shape) has a negative dimension") }
        let count = shape.reduce(1, *)
        guard count == scalars.count else {
            throw QLoraError.shapeMismatch(context: "IntTensor(shape:scalars:) element count", expected: [count], actual: [scalars.count])
        }
        self.shape = shape
        self.scalars = scalars
    }
}
