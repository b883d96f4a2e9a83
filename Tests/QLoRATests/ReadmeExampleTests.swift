import Foundation
import XCTest
@testable import QLoRA

/// The README's ```console blocks run as written: each `$ qlora …` line (with `\` continuations)
/// runs in a scratch directory that sees the project's Graphs/ and ../shared/reference as the
/// project root does, with the built qlora first on the PATH. The lines after a command are its
/// exact output (stdout, then stderr); an expected `error:` line means exit status 1, else 0.
final class ReadmeExampleTests: XCTestCase {
    struct Example {
        var command: String
        var expected: [String]
    }

    /// The console examples of a Markdown file, in order.
    static func examples(in markdown: String) -> [Example] {
        var examples: [Example] = []
        var inBlock = false
        var pending: String?
        for line in markdown.components(separatedBy: "\n") {
            if line.hasPrefix("```") {
                inBlock = line == "```console"
                pending = nil
                continue
            }
            guard inBlock else { continue }
            if let p = pending {
                let joined = p + " " + line.trimmingCharacters(in: .whitespaces)
                if joined.hasSuffix("\\") { pending = String(joined.dropLast()) } else { pending = nil; examples.append(Example(command: joined, expected: [])) }
            } else if line.hasPrefix("$ ") {
                let command = String(line.dropFirst(2))
                if command.hasSuffix("\\") { pending = String(command.dropLast()) } else { examples.append(Example(command: command, expected: [])) }
            } else if !examples.isEmpty {
                examples[examples.count - 1].expected.append(line)
            }
        }
        return examples
    }

    func testExtractionJoinsContinuationsAndCollectsOutput() {
        let md = "text\n```console\n$ qlora a \\\n    --b c\nout 1\nout 2\n$ qlora d\n```\n```sh\n$ not this\n```\n"
        let e = Self.examples(in: md)
        XCTAssertEqual(e.map(\.command), ["qlora a  --b c", "qlora d"])
        XCTAssertEqual(e.map(\.expected), [["out 1", "out 2"], []])
    }

    func testReadmeExamplesRunAsWritten() throws {
        let readme = try String(contentsOf: Reference.projectRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let examples = Self.examples(in: readme)
        XCTAssertGreaterThanOrEqual(examples.count, 3, "README has console examples")
        // work/ is the current directory: work/Graphs and ../shared resolve as from the project root.
        let tmp = try makeTempDirectory(self)
        let work = tmp.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: work.appendingPathComponent("Graphs"),
                                                   withDestinationURL: Reference.projectRoot.appendingPathComponent("Graphs"))
        try FileManager.default.createSymbolicLink(at: tmp.appendingPathComponent("shared"),
                                                   withDestinationURL: Reference.root.deletingLastPathComponent())
        let path = CLIRunner.executable.deletingLastPathComponent().path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        for example in examples {
            let r = try CLIRunner.run(URL(fileURLWithPath: "/bin/sh"), ["-c", example.command], in: work,
                                      environment: ["PATH": path, "HOME": tmp.path])
            let actual = (r.stdout + r.stderr).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let expectedStatus: Int32 = example.expected.contains { $0.hasPrefix("error:") } ? 1 : 0
            XCTAssertEqual(r.status, expectedStatus, "$ \(example.command)\n\(actual.joined(separator: "\n"))")
            XCTAssertEqual(actual.filter { !$0.isEmpty }, example.expected.filter { !$0.isEmpty }, "$ \(example.command)")
        }
    }
}
