import Foundation
import QLoRA

/// One `NAME=SOURCE` of `qlora pack`: a tensor read from a .npy file (float32/float64/float16,
/// C order), a raw little-endian float32 file with a shape (`FILE:2x4x64`), or a JSON file of
/// nested number arrays (rectangular; the nesting gives the shape).
struct TensorSource {
    let name: String
    let path: String
    let shape: [Int]?

    /// Parses `NAME=FILE` or `NAME=FILE:D1xD2x…`.
    init(_ argument: String) throws {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw QLoraError.invalidArgument("expected NAME=FILE[:SHAPE], e.g. x=x.f32:2x4x64, got \"\(argument)\"")
        }
        name = parts[0]
        if let colon = parts[1].lastIndex(of: ":"), parts[1][parts[1].index(after: colon)...].allSatisfy({ $0.isNumber || $0 == "x" }) {
            path = String(parts[1][..<colon])
            let text = String(parts[1][parts[1].index(after: colon)...])
            let dims = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
            guard !dims.isEmpty, dims.allSatisfy({ ($0 ?? 0) > 0 }) else {
                throw QLoraError.invalidArgument("\(argument): shape \"\(text)\" must be positive sizes joined by x, e.g. 2x4x64")
            }
            shape = dims.map { $0! }
        } else {
            path = parts[1]
            shape = nil
        }
    }

    /// Reads the tensor.
    func load() throws -> Tensor {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw QLoraError.io(file: path, reason: FileManager.default.fileExists(atPath: path) ? "cannot read it" : "no such file")
        }
        let lower = path.lowercased()
        if lower.hasSuffix(".npy") { return try withShape(NPYFile.read(data, path: path)) }
        if lower.hasSuffix(".json") { return try withShape(JSONTensor.read(data, path: path)) }
        guard let shape else {
            throw QLoraError.invalidArgument("\(name)=\(path): a raw float32 file needs its shape, e.g. \(name)=\(path):2x4x64 (or use .npy / .json)")
        }
        let count = shape.reduce(1, *)
        guard data.count == count * 4 else {
            throw QLoraError.invalidArgument("\(path) has \(data.count) bytes, but shape \(shape) needs \(count) float32 values = \(count * 4) bytes")
        }
        let scalars = data.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
        }
        return try Tensor(shape: shape, scalars: scalars)
    }

    /// A .npy or .json tensor, reshaped to the given shape if there is one (same element count).
    private func withShape(_ t: Tensor) throws -> Tensor {
        guard let shape, shape != t.shape else { return t }
        guard shape.reduce(1, *) == t.count else {
            throw QLoraError.invalidArgument("\(path) holds \(t.count) values (shape \(t.shape)), which shape \(shape) does not fit")
        }
        return try Tensor(shape: shape, scalars: t.scalars)
    }
}
