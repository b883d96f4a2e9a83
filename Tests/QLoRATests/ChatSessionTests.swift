import Foundation
import XCTest
@testable import QLoRA

/// Text generation and chat on SmolLM2-135M-Instruct (the Q4_1 GGUF `make model` fetches, NF4 at
/// load) against transformers' greedy generations on the canonical NF4 model
/// (../shared/reference/smollm2/nf4/outputs.json: the conversations, their rendered prompt ids and
/// `model.generate(do_sample=False, max_new_tokens=24, eos_token_id=2)`).
final class ChatSessionTests: XCTestCase {
    struct ReferencePrompt {
        var name: String
        var messages: [ChatMessage]
        var inputIds: [Int32]
        var generatedIds: [Int32]
        var stoppedAtEOS: Bool
    }

    static func referencePrompts() throws -> [ReferencePrompt] {
        let outputs = try JSONValue.parse(Reference.bytes("smollm2/nf4/outputs.json"), file: "outputs.json", field: "$")
        guard case let .array(prompts)? = outputs["prompts"] else { throw QLoraError.invalidArgument("nf4/outputs.json: prompts") }
        return try prompts.map { p in
            guard case let .string(name)? = p["name"], case let .array(messages)? = p["messages"], case let .array(input)? = p["input_ids"],
                  case let .array(generated)? = p["generated_ids"], case let .bool(stopped)? = p["stopped_at_eos"],
                  case .bool(true)? = p["add_generation_prompt"] else { throw QLoraError.invalidArgument("nf4/outputs.json: a prompt's fields") }
            return ReferencePrompt(
                name: name,
                messages: messages.compactMap { m in
                    guard case let .string(role)? = m["role"], case let .string(content)? = m["content"] else { return nil }
                    return ChatMessage(role: role, content: content)
                },
                inputIds: input.compactMap(\.doubleValue).map { Int32($0) },
                generatedIds: generated.compactMap(\.doubleValue).map { Int32($0) }, stoppedAtEOS: stopped)
        }
    }

    nonisolated(unsafe) static var loaded: (model: LlamaModel, tokenizer: BPETokenizer)?

    /// The model and its tokenizer, loaded once for the class (skips when the GGUF is absent).
    func smolLM2() throws -> (model: LlamaModel, tokenizer: BPETokenizer) {
        let file = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw XCTSkip("\(file.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        if let loaded = ChatSessionTests.loaded { return loaded }
        let l = (try LlamaModel.load(file), try BPETokenizer.load(path: file.path))
        ChatSessionTests.loaded = l
        return l
    }

    /// The end-of-turn token comes from the template: ChatML closes a turn with <|im_end|>.
    func testStopTokensIncludeTheTemplatesEndOfTurn() throws {
        let t = try BPETokenizer.load(path: Reference.url("smollm2/tokenizer/tokenizer.json").path)
        let imEnd = try XCTUnwrap(t.id(of: "<|im_end|>"))
        XCTAssertEqual(t.endOfTurnTokenId(template: try t.parsedChatTemplate()), imEnd)
        XCTAssertEqual(t.stopTokenIds(modelEOS: [7], template: try t.parsedChatTemplate()), Set([7, imEnd] + (t.eosTokenId.map { [$0] } ?? [])))
        // A template that writes nothing special after the answer has no end-of-turn token.
        let plain = try ChatTemplate("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
        XCTAssertNil(t.endOfTurnTokenId(template: plain))
    }

    /// Each reference conversation answered by a ChatSession: the rendered prompt has
    /// transformers' ids, the greedy answer its ids, and the streamed text is the tokenizer's
    /// decode of those ids (without the final <|im_end|>).
    func testGreedyChatAnswersEqualTransformers() throws {
        let (model, tokenizer) = try smolLM2()
        for p in try ChatSessionTests.referencePrompts() {
            let system = p.messages.first { $0.role == "system" }?.content
            guard let user = p.messages.last, user.role == "user", p.messages.count == (system == nil ? 1 : 2) else {
                return XCTFail("\(p.name): expected [system,] user")
            }
            let session = try ChatSession(model: model, tokenizer: tokenizer, system: system, capacity: p.inputIds.count + 24)
            XCTAssert(session.generator.stopTokenIds.contains(2), "\(p.name): <|im_end|> (2) stops")
            var streamed: [String] = []
            let r = try session.reply(to: user.content, maxNewTokens: 24, onText: { streamed.append($0) })
            XCTAssertEqual(r.promptIds, p.inputIds, "\(p.name): rendered prompt ids")
            XCTAssertEqual(r.output.ids, p.generatedIds, "\(p.name): greedy answer ids")
            XCTAssertEqual(r.output.stoppedAtStopToken, p.stoppedAtEOS, p.name)
            let answerIds = p.stoppedAtEOS ? p.generatedIds.dropLast() : p.generatedIds[...]
            XCTAssertEqual(r.text, try tokenizer.decode(answerIds.map { Int($0) }), "\(p.name): text")
            XCTAssertEqual(streamed.joined(), r.text, "\(p.name): streamed pieces")
            XCTAssertEqual(session.history, [user, ChatMessage(role: "assistant", content: r.text)], p.name)
        }
    }

    /// A second turn reuses the cache for the first turn's tokens and answers exactly as a fresh
    /// prefill of the whole conversation; /reset-like divergence keeps only the common prefix.
    func testNextTurnReusesTheCacheAndEqualsAFreshPrefill() throws {
        let (model, tokenizer) = try smolLM2()
        let session = try ChatSession(model: model, tokenizer: tokenizer, system: "Reply briefly.", capacity: 160)
        let first = try session.reply(to: "Hi!", maxNewTokens: 24)
        let second = try session.reply(to: "What is 2+2?", maxNewTokens: 24)
        XCTAssertEqual(session.history.count, 4)
        XCTAssertGreaterThan(second.output.reusedTokens, first.promptIds.count, "the first turn's prompt and answer come from the cache")
        XCTAssertEqual(Array(second.promptIds.prefix(first.promptIds.count)), first.promptIds)

        let fresh = try TextGenerator(model: model, tokenizer: tokenizer, capacity: 160, stopTokenIds: session.generator.stopTokenIds)
        var greedy = TokenSampler.greedy
        let recomputed = try fresh.generate(promptIds: second.promptIds, maxNewTokens: 24, sampler: &greedy)
        XCTAssertEqual(recomputed.reusedTokens, 0)
        XCTAssertEqual(second.output.ids, recomputed.ids, "cached second turn vs fresh prefill")

        // After a reset the new conversation diverges inside the cached tokens: the answer is the
        // reference greeting (../shared/reference/smollm2/nf4 'greeting_short_system').
        session.reset()
        let again = try session.reply(to: "Hi!", maxNewTokens: 24)
        let greeting = try XCTUnwrap(try ChatSessionTests.referencePrompts().first { $0.name == "greeting_short_system" })
        XCTAssertEqual(again.promptIds, greeting.inputIds)
        XCTAssertEqual(again.output.ids, greeting.generatedIds)
        XCTAssertEqual(again.output.reusedTokens, greeting.inputIds.count - 1, "all but the last prompt token reused")
    }

    /// A conversation that outgrows the context drops its oldest exchange (with a notice) and
    /// still answers as transformers does on the shortened conversation; a message too long for
    /// the context alone is an error that leaves the history as it was.
    func testOverflowDropsTheOldestExchange() throws {
        let (model, tokenizer) = try smolLM2()
        let arith = try XCTUnwrap(try ChatSessionTests.referencePrompts().first { $0.name == "arith_custom_system" })
        // 50 positions: "Hi!" (22 prompt tokens + 16) fits; the two-exchange rendering + 16 does not.
        let session = try ChatSession(model: model, tokenizer: tokenizer, system: "You are a helpful assistant.", capacity: 50)
        var notices: [String] = []
        let first = try session.reply(to: "Hi!", maxNewTokens: 16, onNotice: { notices.append($0) })
        XCTAssertEqual(first.droppedMessages, 0)
        XCTAssertEqual(notices, [])
        let second = try session.reply(to: "What is 2+2?", maxNewTokens: 16, onNotice: { notices.append($0) })
        XCTAssertEqual(second.droppedMessages, 2)
        XCTAssertEqual(notices.count, 1)
        XCTAssert(notices[0].contains("dropped the oldest 2 messages"), notices[0])
        XCTAssertEqual(second.promptIds, arith.inputIds)
        XCTAssertEqual(second.output.ids, arith.generatedIds)
        XCTAssertEqual(session.history.map(\.role), ["user", "assistant"])

        let before = session.history
        let long = String(repeating: "word ", count: 80)
        XCTAssertThrowsError(try session.reply(to: long, maxNewTokens: 16)) { e in
            XCTAssert(e is QLoraError && "\(e)".contains("the context holds 50"), "\(e)")
        }
        XCTAssertEqual(session.history, before)
        // And the session still answers afterwards.
        XCTAssertNoThrow(try session.reply(to: "Hi!", maxNewTokens: 4))
    }
}
