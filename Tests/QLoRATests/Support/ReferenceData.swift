import Foundation
import XCTest
@testable import QLoRA

/// Access to ../shared/reference (relative to the project root), made by bitsandbytes 0.50.2 /
/// PEFT 0.21.2. Files are little-endian, row-major.
enum Reference {
    /// The project root: two levels above this file's folder (Tests/QLoRATests/Support).
    static let projectRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let root: URL = projectRoot.deletingLastPathComponent().appendingPathComponent("shared/reference")

    static func url(_ name: String) -> URL { root.appendingPathComponent(name) }

    static func data(_ name: String) throws -> Data {
        let u = url(name)
        guard let d = FileManager.default.contents(atPath: u.path) else {
            throw QLoraError.io(file: u.path, reason: "reference file missing")
        }
        return d
    }

    static func floats(_ name: String) throws -> [Float] {
        let d = try data(name)
        return d.withUnsafeBytes { raw in
            (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try data(name)) }

    static func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        try Tensor(shape: shape, scalars: floats(name))
    }

    /// The parsed manifest (`manifest.json` or `interop/manifest.json`).
    static func manifest(_ name: String = "manifest.json") throws -> [String: Any] {
        let obj = try JSONSerialization.jsonObject(with: data(name))
        guard let dict = obj as? [String: Any] else { throw QLoraError.malformedFile(file: name, field: "$", reason: "not an object") }
        return dict
    }
}

/// Asserts bit-identical Float arrays, reporting the first difference.
func assertBitIdentical(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    for i in 0..<min(a.count, b.count) where a[i].bitPattern != b[i].bitPattern {
        XCTFail("\(what): first difference at \(i): \(a[i]) vs \(b[i])", file: file, line: line)
        return
    }
}

/// Asserts max|a-b| <= tol * max(max|b|, 1e-30).
func assertClose(_ a: [Float], _ b: [Float], relative tol: Float, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "\(what): count", file: file, line: line)
    guard a.count == b.count else { return }
    let scale = max(b.map { abs($0) }.max() ?? 0, 1e-30)
    var worst: Float = 0, at = 0
    for i in 0..<a.count { let d = abs(a[i] - b[i]); if !(d <= worst) { worst = d; at = i } }
    XCTAssert(worst <= tol * scale, "\(what): max abs diff \(worst) at \(at) (\(a[at]) vs \(b[at])) > \(tol) × \(scale)",
              file: file, line: line)
}

/// Deterministic pseudo-random floats (xorshift), uniform in [-scale, scale).
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E3779B97F4A7C15 | 1 }
    mutating func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
    mutating func float(_ scale: Float = 1) -> Float { (Float(next() >> 40) / Float(1 << 24) * 2 - 1) * scale }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float(scale) } }
}
