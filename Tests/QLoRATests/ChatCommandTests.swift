import Foundation
import XCTest
@testable import QLoRA

/// `qlora generate --prompt` and `qlora chat` on SmolLM2-135M-Instruct, through the executable,
/// against transformers' greedy answers (../shared/reference/smollm2/nf4/outputs.json).
final class ChatCommandTests: XCTestCase {
    var model: String { GGUFSmolLM2Tests.modelFile.path }

    func requireModel() throws {
        guard FileManager.default.fileExists(atPath: model) else {
            throw XCTSkip("\(model) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
    }

    func reference(_ name: String) throws -> ChatSessionTests.ReferencePrompt {
        try XCTUnwrap(try ChatSessionTests.referencePrompts().first { $0.name == name })
    }

    /// The reference answer's text: the tokenizer's decode of its ids without the final <|im_end|>.
    func answerText(_ p: ChatSessionTests.ReferencePrompt) throws -> String {
        let t = try BPETokenizer.load(path: model)
        return try t.decode((p.stoppedAtEOS ? p.generatedIds.dropLast() : p.generatedIds[...]).map { Int($0) })
    }

    func ids(_ v: JSONValue?) -> [Int32]? {
        guard case let .array(a)? = v else { return nil }
        return a.compactMap(\.doubleValue).map { Int32($0) }
    }

    func testGenerateChatJSON() throws {
        try requireModel()
        let arith = try reference("arith_custom_system")
        let r = try CLIRunner.run(["generate", "--model", model, "--chat", "--system", "You are a helpful assistant.", "--prompt", "What is 2+2?",
                                   "--max-new-tokens", "24", "--format", "json", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let v = try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "$")
        XCTAssertEqual(ids(v["prompt_ids"]), arith.inputIds)
        XCTAssertEqual(ids(v["ids"]), arith.generatedIds)
        guard case let .string(text)? = v["text"] else { return XCTFail("no text in \(r.stdout)") }
        XCTAssertEqual(text, try answerText(arith))
        XCTAssertEqual(text, "2 + 2 = 4")
        XCTAssertNotNil(v["decode_tokens_per_s"]?.doubleValue)
    }

    /// Without --chat the text is tokenized as is (special tokens in it matched, SmolLM2 adds no
    /// BOS): the reference conversation's rendered text gives the same prompt ids and answer.
    func testGeneratePlainPromptTokenizesTheText() throws {
        try requireModel()
        let greeting = try reference("greeting_short_system")
        let rendered = "<|im_start|>system\nReply briefly.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        let r = try CLIRunner.run(["generate", "--model", model, "--prompt", rendered, "--max-new-tokens", "24", "--format", "json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let v = try JSONValue.parse(Array(r.stdout.utf8), file: "stdout", field: "$")
        XCTAssertEqual(ids(v["prompt_ids"]), greeting.inputIds)
        XCTAssertEqual(ids(v["ids"]), greeting.generatedIds)
        XCTAssertEqual(v["text"], .string(try answerText(greeting)))
    }

    /// Text format: the answer is stdout (streamed), the rates go to stderr; no --system: the
    /// template's default system message, as transformers renders it.
    func testGenerateChatTextStreamsTheAnswer() throws {
        try requireModel()
        let colors = try reference("colors_default_system")
        let r = try CLIRunner.run(["generate", "--model", model, "--chat", "--prompt", "Name three primary colors.", "--max-new-tokens", "24"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, try answerText(colors) + "\n")
        XCTAssert(r.stderr.contains("24 new tokens"), r.stderr)
    }

    /// A pipe: one message per line, /reset forgets the conversation, /exit ends (lines after it
    /// are not read); only the answers reach stdout.
    func testChatThroughAPipe() throws {
        try requireModel()
        let greeting = try answerText(try reference("greeting_short_system"))
        let r = try CLIRunner.run(["chat", "--model", model, "--system", "Reply briefly.", "--max-new-tokens", "24"],
                                  stdin: "Hi!\n\n/reset\nHi!\n/exit\nWhat is 2+2?\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, greeting + "\n" + greeting + "\n")
        XCTAssert(r.stderr.contains("conversation reset"), r.stderr)
        XCTAssert(r.stderr.contains("19 of the prompt's 20 from the cache"), "the second 'Hi!' reuses the cache: \(r.stderr)")
    }

    /// End of input (Ctrl-D) ends the chat; a conversation longer than --context drops its
    /// oldest exchange with a notice on stderr and answers as transformers does on what remains.
    func testChatEndsAtEOFAndDropsOldTurns() throws {
        try requireModel()
        let arith = try reference("arith_custom_system")
        let r = try CLIRunner.run(["chat", "--model", model, "--system", "You are a helpful assistant.", "--max-new-tokens", "16", "--context", "50"],
                                  stdin: "Hi!\nWhat is 2+2?\n")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.hasSuffix("\n" + (try answerText(arith)) + "\n"), r.stdout)
        XCTAssert(r.stderr.contains("dropped the oldest 2 messages"), r.stderr)
    }

    func testUserErrors() throws {
        try CLIRunner.assertUserError(["generate", "--model", "m.gguf", "--prompt", "hi", "--prompt-ids", "1"], ["--prompt", "--prompt-ids"])
        try CLIRunner.assertUserError(["generate", "--model", "m.gguf", "--prompt-ids", "1", "--chat"], ["--chat", "--prompt"])
        try CLIRunner.assertUserError(["generate", "--model", "m.gguf", "--prompt", "hi", "--system", "x"], ["--system", "--chat"])
        try CLIRunner.assertUserError(["chat", "--model", "m.gguf", "--context", "1"], ["--context", "1"])
        try CLIRunner.assertUserError(["chat", "--model", "/nonexistent/m.gguf"], ["/nonexistent/m.gguf"])
    }
}
