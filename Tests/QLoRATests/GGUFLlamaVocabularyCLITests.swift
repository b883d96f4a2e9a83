import Foundation
import XCTest
@testable import QLoRA

/// A Llama-2-style GGUF (SentencePiece "llama" vocabulary, here Mistral's, with the Llama-2 chat
/// template) end to end through the executable: `qlora tokenize [--chat]` gives transformers' ids
/// and labels (Tests/Fixtures/gguf-llama-vocab/cases.json); on a tiny random Llama carrying that
/// vocabulary `generate --prompt [--chat]` and `chat` run from text, and `train --data x.jsonl`
/// trains 2 steps on three chats whose labels (prompt masked) are transformers'.
final class GGUFLlamaVocabularyCLITests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("qlora-gguf-llama-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func ints(_ v: JSONValue?) -> [Int] { GGUFTokenizerTests.ints(v) ?? [] }

    func json(_ r: CLIRunner.Result) throws -> JSONValue {
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "$")
    }

    func chatCase(_ template: String, _ name: String) throws -> JSONValue {
        try XCTUnwrap(try GGUFLlamaVocabularyTests.items("chats").first { $0["template"] == .string(template) && $0["name"] == .string(name) })
    }

    func testTokenizeCommand() throws {
        let gguf = tmp.appendingPathComponent("vocab.gguf")
        try GGUFLlamaVocabularyTests.writeGGUF(to: gguf, model: false)
        let cases = try GGUFLlamaVocabularyTests.items("cases")
        for k in [3, 20, 40, 64, 66] {
            guard case .string(let text)? = cases[k]["text"] else { return XCTFail("case \(k)") }
            let v = try json(try CLIRunner.run(["tokenize", "--tokenizer", gguf.path], stdin: text))
            XCTAssertEqual(ints(v["ids"]), ints(cases[k]["ids"]), text.debugDescription)
            XCTAssertEqual(v["tokens"], cases[k]["tokens"], text.debugDescription)
        }
        let chat = try chatCase("llama2", "system_multi_turn")
        let v = try json(try CLIRunner.run(["tokenize", "--tokenizer", gguf.path, "--chat"], stdin: try XCTUnwrap(chat["messages"]).pythonDumps()))
        XCTAssertEqual(v["text"], chat["text"])
        XCTAssertEqual(ints(v["ids"]), ints(chat["ids"]))
        XCTAssertEqual(ints(v["labels"]), ints(chat["labels"]))
    }

    func testGenerateChatAndTrainOnATinyLlama() throws {
        let gguf = tmp.appendingPathComponent("tiny-llama.gguf")
        try GGUFLlamaVocabularyTests.writeGGUF(to: gguf, model: true)
        let tokenizer = try BPETokenizer.load(path: gguf.path)

        // generate --prompt: BOS + transformers' ids of the text, then 4 new tokens.
        let hello = try XCTUnwrap(try GGUFLlamaVocabularyTests.items("cases").first { $0["text"] == .string("Hello world") })
        var v = try json(try CLIRunner.run(["generate", "--model", gguf.path, "--prompt", "Hello world", "--max-new-tokens", "4",
                                            "--format", "json", "--threads", "2"]))
        XCTAssertEqual(ints(v["prompt_ids"]), ints(hello["ids_with_special"]))
        var ids = ints(v["ids"])
        XCTAssertTrue((1...4).contains(ids.count), "\(ids)")
        XCTAssertEqual(v["text"], .string(try tokenizer.decode(ids.last == 2 ? Array(ids.dropLast()) : ids)))

        // generate --chat: the Llama-2 template's render of one user message, as transformers tokenizes it.
        let single = try chatCase("llama2", "single_user")
        guard case .array(let msgs)? = single["messages"], msgs.count == 1, case .string(let question)? = msgs[0]["content"] else {
            return XCTFail("no question")
        }
        v = try json(try CLIRunner.run(["generate", "--model", gguf.path, "--chat", "--prompt", question, "--max-new-tokens", "3",
                                        "--format", "json", "--threads", "2"]))
        XCTAssertEqual(ints(v["prompt_ids"]), ints(single["ids"]))
        ids = ints(v["ids"])
        XCTAssertTrue((1...3).contains(ids.count), "\(ids)")

        // chat: two turns from stdin.
        let r = try CLIRunner.run(["chat", "--model", gguf.path, "--max-new-tokens", "3", "--threads", "2"], stdin: "Hi!\nWhat is 2+2?\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.filter { $0 == "\n" }.count, 2, r.stdout)

        // train --data x.jsonl: three chats; their labels mask the prompt exactly as transformers' offsets say.
        let names = ["system_multi_turn", "two_turns_no_system", "whitespace_unicode_quotes"]
        let chats = try names.map { try chatCase("llama2", $0) }
        let data = tmp.appendingPathComponent("chats.jsonl")
        try chats.map { JSONValue.object([("messages", $0["messages"]!)]).pythonDumps() + "\n" }.joined().write(to: data, atomically: true, encoding: .utf8)
        let examples = try JSONLDataset.load(path: data.path, tokenizer: tokenizer)
        XCTAssertEqual(examples.count, 3)
        for (e, c) in zip(examples, chats) {
            XCTAssertEqual(e.ids, ints(c["ids"]))
            XCTAssertEqual(e.labels, ints(c["labels"]))
            XCTAssertEqual(e.labels.first, -100)
            XCTAssertLessThan(e.trainedCount, e.ids.count / 2)
        }
        let out = tmp.appendingPathComponent("adapter").path, log = tmp.appendingPathComponent("log.jsonl").path
        let t = try CLIRunner.run(["train", "--model", gguf.path, "--data", data.path, "--steps", "2", "--optimizer", "adamw", "--lr", "0.01",
                                   "--threads", "2", "--log-json", log, "--out", out])
        XCTAssertEqual(t.status, 0, t.stderr)
        let lines = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        for line in lines {
            let loss = try JSONValue.parse(Array(line.utf8), file: "log", field: "$")["loss"]?.doubleValue
            XCTAssertTrue(loss.map { $0.isFinite && $0 > 0 } ?? false, String(line))
        }
        XCTAssertFalse(try LoraAdapter(directory: URL(fileURLWithPath: out)).modules.isEmpty)
    }
}
