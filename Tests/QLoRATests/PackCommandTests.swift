import Foundation
import XCTest
@testable import QLoRA

/// `qlora pack`: input files from .npy, JSON and raw float32, and its errors.
final class PackCommandTests: XCTestCase {
    /// A version-1 .npy file of little-endian float32 values.
    func npy(_ values: [Float], shape: [Int], descr: String = "<f4") -> Data {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var d = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
        d.append(Data(header.utf8))
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        return d
    }

    func testPacksNPYJSONAndRawFloat32() throws {
        let dir = try makeTempDirectory(self)
        let values: [Float] = [0.5, -1, 2, 0, 3.25, -0.125]
        try npy(values, shape: [2, 3]).write(to: dir.appendingPathComponent("a.npy"))
        try "[[0.5, -1, 2], [0, 3.25, -0.125]]".write(to: dir.appendingPathComponent("b.json"), atomically: true, encoding: .utf8)
        let x3d = Reference.url("interop/expected/x3d.f32").path
        let out = dir.appendingPathComponent("p.safetensors").path
        let r = try CLIRunner.run(["pack", "-o", out, "a=\(dir.path)/a.npy", "b=\(dir.path)/b.json", "c=\(dir.path)/a.npy:3x2", "x=\(x3d):2x4x64"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "wrote a [2, 3], b [2, 3], c [3, 2], x [2, 4, 64] to \(out)\n")
        let file = try SafeTensorsFile(url: URL(fileURLWithPath: out))
        XCTAssertEqual(file.names, ["a", "b", "c", "x"])
        assertBitIdentical(try file.tensor("a").scalars, values, "npy")
        assertBitIdentical(try file.tensor("b").scalars, values, "json")
        XCTAssertEqual(try file.tensor("c").shape, [3, 2])
        assertBitIdentical(try file.tensor("x").scalars, try Reference.floats("interop/expected/x3d.f32"), "raw f32")
    }

    func testErrorsNameTheFileAndTheProblem() throws {
        let dir = try makeTempDirectory(self)
        let out = dir.appendingPathComponent("p.safetensors").path
        let x3d = Reference.url("interop/expected/x3d.f32").path
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(x3d):2x4x32"], [x3d, "2048 bytes", "[2, 4, 32]", "1024 bytes"])
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(x3d)"], ["x=\(x3d)", "needs its shape"])
        try CLIRunner.assertUserError(["pack", "-o", out, "x"], ["NAME=FILE", "\"x\""])
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(dir.path)/none.npy"], ["\(dir.path)/none.npy", "no such file"])
        try "[[1, 2], [3]]".write(to: dir.appendingPathComponent("r.json"), atomically: true, encoding: .utf8)
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(dir.path)/r.json"], ["r.json", "$[1]", "rectangular"])
        try npy([1, 2], shape: [2], descr: "<i4").write(to: dir.appendingPathComponent("i.npy"))
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(dir.path)/i.npy"], ["i.npy", "'<i4' is not supported"])
        try Data("not numpy at all".utf8).write(to: dir.appendingPathComponent("t.npy"))
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(dir.path)/t.npy"], ["t.npy is not a .npy file"])
        try CLIRunner.assertUserError(["pack", "-o", out, "x=\(x3d):2x4x64", "x=\(x3d):8x64"], ["'x' is given twice"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
