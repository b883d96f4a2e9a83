import Foundation
import XCTest
@testable import QLoRA

/// `qlora tokenize` end to end (the flags of issue 11): plain text and --chat on SmolLM2's
/// tokenizer.json, its directory and the GGUF, against the shared reference encodings and
/// conversations, and a SentencePiece model against sentencepiece's ids; user errors are one line.
final class TokenizeCommandTests: XCTestCase {
    static let tokenizerJSON = Reference.url("smollm2/tokenizer/tokenizer.json").path
    static let tokenizerDir = Reference.url("smollm2/tokenizer").path

    func run(_ args: [String], stdin: String) throws -> CLIRunner.Result {
        let p = Process()
        p.executableURL = CLIRunner.executable
        p.arguments = ["tokenize"] + args
        let inp = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = inp
        p.standardOutput = out
        p.standardError = err
        try p.run()
        inp.fileHandleForWriting.write(Data(stdin.utf8))
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CLIRunner.Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    func output(_ args: [String], stdin: String) throws -> JSONValue {
        let r = try run(args, stdin: stdin)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "(root)")
    }

    func ints(_ v: JSONValue?) -> [Int] { GGUFTokenizerTests.ints(v) ?? [] }

    func testPlainText() throws {
        let text = "Hello world, it's 2026! <|im_end|> 😀"
        let t = try TokenizerTests.tokenizer.get()
        for path in [TokenizeCommandTests.tokenizerJSON, TokenizeCommandTests.tokenizerDir] {
            let v = try output(["--tokenizer", path], stdin: text)
            XCTAssertEqual(ints(v["ids"]), t.encode(text))
            XCTAssertEqual(v.keys, ["ids", "tokens"])
            guard case .array(let tokens)? = v["tokens"] else { return XCTFail() }
            XCTAssertEqual(tokens.first, .string("Hello"))
            XCTAssertEqual(tokens[1], .string("\u{120}world"))
        }
        let v = try output(["--tokenizer", TokenizeCommandTests.tokenizerJSON, "--format", "json"], stdin: "Hello world")
        XCTAssertEqual(ints(v["ids"]), [19556, 905])
        let r = try run(["--tokenizer", TokenizeCommandTests.tokenizerJSON, "--format", "text"], stdin: "Hello world")
        XCTAssertEqual(r.stdout, "19556\tHello\n905\t\u{120}world\n")
    }

    func testGGUFFollowsLlamaCpp() throws {
        let gguf = GGUFTokenizerTests.modelFile.path
        guard FileManager.default.fileExists(atPath: gguf) else { throw XCTSkip("models/ absent (run `make model`)") }
        // "a  1": transformers [a, Ġ, Ġ, 1]; llama.cpp's smollm pre-tokenizer [a, ĠĠ, 1].
        for c in try GGUFTokenizerTests.encodings() {
            guard let emulated = GGUFTokenizerTests.ints(c["ids_llamacpp_smollm_pretokenizer_emulated"]),
                  case .string(let text)? = c["text"] else { continue }
            XCTAssertEqual(ints(try output(["--tokenizer", gguf], stdin: text)["ids"]), emulated, text)
        }
    }

    func testChatMatchesReference() throws {
        guard case .array(let cases) = try JSONValue.parse(try Reference.bytes("smollm2/chat/conversations.json"), file: "c", field: "$") else { return XCTFail() }
        var paths = [TokenizeCommandTests.tokenizerJSON]
        if FileManager.default.fileExists(atPath: GGUFTokenizerTests.modelFile.path) { paths.append(GGUFTokenizerTests.modelFile.path) }
        for path in paths {
            for c in cases {
                guard case .string(let name)? = c["name"], case .bool(let gen)? = c["add_generation_prompt"], let messages = c["messages"] else { continue }
                let v = try output(["--tokenizer", path, "--chat"] + (gen ? ["--add-generation-prompt"] : []), stdin: messages.pythonDumps())
                XCTAssertEqual(v.keys, ["ids", "tokens", "text", "labels"])
                XCTAssertEqual(ints(v["ids"]), ints(c["ids"]), "\(name) \(path)")
                XCTAssertEqual(ints(v["labels"]), ints(c["labels"]), "\(name) \(path)")
                XCTAssertEqual(v["text"], c["rendered"], "\(name) \(path)")
            }
        }
    }

    func testUserErrors() throws {
        func expect(_ args: [String], stdin: String, _ fragments: [String], line: UInt = #line) throws {
            let r = try run(args, stdin: stdin)
            XCTAssertEqual(r.status, 1, line: line)
            XCTAssertEqual(r.stdout, "", line: line)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, line: line)
            for f in fragments { XCTAssertTrue(r.stderr.contains(f), "\(r.stderr) lacks \(f)", line: line) }
        }
        let tj = TokenizeCommandTests.tokenizerJSON
        try expect(["--tokenizer", "/nonexistent/tok.json"], stdin: "x", ["/nonexistent/tok.json", "no such file"])
        try expect(["--tokenizer", tj, "--chat"], stdin: "{\"role\": \"user\"}", ["--chat", "JSON array"])
        try expect(["--tokenizer", tj, "--chat"], stdin: "[{\"role\": \"user\"}]", ["message 0", "content"])
        try expect(["--tokenizer", tj, "--chat"], stdin: "[{\"role\": \"user\", ", ["<stdin>"])
        try expect(["--tokenizer", tj, "--add-generation-prompt"], stdin: "x", ["--add-generation-prompt needs --chat"])
        try expect(["--tokenizer", tj, "--format", "xml"], stdin: "x", ["xml"])
        try expect(["--tokenizer", Reference.url("smollm2/manifest.json").deletingLastPathComponent().appendingPathComponent("lora").path],
                   stdin: "x", ["without a tokenizer.json"])
    }
}

extension TokenizeCommandTests {
    func testSentencePieceModel() throws {
        let model = SentencePieceTests.dir.appendingPathComponent("tokenizer.model.v1").path
        let v = try output(["--tokenizer", model], stdin: "  two  spaces ")
        XCTAssertEqual(ints(v["ids"]), [259, 989, 28705, 10599, 28705])  // sentencepiece's ids (cases.json)
        XCTAssertEqual(v["tokens"], .array(["\u{2581}\u{2581}", "\u{2581}two", "\u{2581}", "\u{2581}spaces", "\u{2581}"].map { .string($0) }))
        let r = try run(["--tokenizer", model, "--chat"], stdin: "[]")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: ") && r.stderr.contains("SentencePiece"), r.stderr)
    }
}
