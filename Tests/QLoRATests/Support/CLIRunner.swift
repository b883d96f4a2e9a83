import Foundation
import XCTest
@testable import QLoRA

/// Runs the built `qlora` executable as a subprocess, optionally in another directory.
enum CLIRunner {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var errorLines: [Substring] { stderr.split(separator: "\n").filter { $0.hasPrefix("error:") } }
    }

    /// The executable next to the test bundle, else under the project's .build/release.
    static var executable: URL { CLITests.executable }

    static func run(_ args: [String], in directory: URL? = nil, stdin: String? = nil) throws -> Result {
        try run(executable, args, in: directory, stdin: stdin)
    }

    /// Runs any program; stdout and stderr are read before waiting, so a large output cannot fill
    /// a pipe and block the child.
    /// `stdin`, when given, is written to the child's standard input, which is then closed (EOF).
    static func run(_ program: URL, _ args: [String], in directory: URL? = nil, environment: [String: String]? = nil,
                    stdin: String? = nil) throws -> Result {
        let p = Process()
        p.executableURL = program
        p.arguments = args
        if let directory { p.currentDirectoryURL = directory }
        if let environment { p.environment = environment }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = stdin.map { _ in Pipe() }
        if let input { p.standardInput = input }
        try p.run()
        if let input, let stdin {
            // Written from another thread: a child that answers before reading everything cannot deadlock us.
            let writer = input.fileHandleForWriting
            let bytes = Data(stdin.utf8)
            Thread.detachNewThread {
                writer.write(bytes)
                try? writer.close()
            }
        }
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    /// A user error: exit status 1, nothing on stdout, exactly one stderr line, starting with
    /// `error:` and naming every fragment (the user's path or value and the cause).
    static func assertUserError(_ args: [String], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try run(args)
        XCTAssertEqual(r.status, 1, "qlora \(args.joined(separator: " ")): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", "stdout of a failed command", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssert(r.stderr.hasPrefix("error: "), "stderr: \(r.stderr)", file: file, line: line)
        for f in fragments { XCTAssert(r.stderr.contains(f), "stderr '\(r.stderr)' does not mention '\(f)'", file: file, line: line) }
    }
}
