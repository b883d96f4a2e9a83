import ArgumentParser
import Foundation
import QLoRA

/// `qlora tokenize`: text (or a chat) from stdin to token ids, as JSON.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Tokenize text from stdin (or, with --chat, render and tokenize a conversation).",
        discussion: """
            PATH is a tokenizer.json, a directory holding one (with tokenizer_config.json for the chat template \
            and special tokens), a GGUF file (gpt2 or llama vocabulary), or a SentencePiece tokenizer.model (Llama-2, Mistral; no --chat: it has no template). Prints {"ids": [...], "tokens": [...]}; special tokens written \
            in the text are matched, none are added. With --chat, stdin is a JSON array of {"role", "content"} \
            messages, rendered by the tokenizer's chat template; the output adds "text" (the rendered template) \
            and "labels" (the id where the token is trained, -100 elsewhere: a token is trained when its \
            characters overlap an assistant message's content or the end-of-turn token closing it).
              echo 'Hello world' | qlora tokenize --tokenizer models/SmolLM2-135M-Instruct.Q4_1.gguf
              echo '[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello!"}]' \\
                | qlora tokenize --tokenizer tokenizer.json --chat
            """)

    @Option(help: "A tokenizer.json, a directory holding one, a GGUF file, or a SentencePiece tokenizer.model.")
    var tokenizer: String

    @Flag(help: "stdin is a JSON array of {\"role\", \"content\"} messages rendered with the chat template.")
    var chat = false

    @Flag(help: "With --chat: end with the assistant header the model continues from.")
    var addGenerationPrompt = false

    @Option(help: "Output format: json (one object) or text (one 'id<TAB>token' line per token).")
    var format: TokenizeFormat = .json

    func run() throws {
        do {
            if addGenerationPrompt && !chat { throw QLoraError.invalidArgument("--add-generation-prompt needs --chat") }
            let input = FileHandle.standardInput.readDataToEndOfFile()
            guard let text = String(data: input, encoding: .utf8) else { throw QLoraError.invalidArgument("stdin is not valid UTF-8") }
            if let sp = try TokenizeCommand.sentencePiece(tokenizer) {
                if chat { throw QLoraError.unsupported("--chat with a SentencePiece tokenizer.model (\(tokenizer)) has no chat template; give the model's GGUF, or its tokenizer.json with tokenizer_config.json beside it") }
                let ids = sp.encode(text)
                try write([("ids", .array(ids.map { .int($0) })), ("tokens", .array(ids.map { .string(sp.token(of: $0) ?? "") }))], ids: ids,
                          tokens: ids.map { sp.token(of: $0) ?? "" })
                return
            }
            let t = try BPETokenizer.load(path: tokenizer)
            var members: [(key: String, value: JSONValue)]
            let ids: [Int]
            if chat {
                let messages = try TokenizeCommand.messages(from: [UInt8](input))
                let e = try t.encodeChat(messages, addGenerationPrompt: addGenerationPrompt)
                ids = e.ids
                members = [("ids", .array(ids.map { .int($0) })), ("tokens", .array([])),
                           ("text", .string(e.text)), ("labels", .array(e.labels.map { .int($0) }))]
            } else {
                ids = t.encode(text)
                members = [("ids", .array(ids.map { .int($0) })), ("tokens", .array([]))]
            }
            let tokens = ids.map { t.token(of: $0) ?? "" }
            members[1].value = .array(tokens.map { .string($0) })
            try write(members, ids: ids, tokens: tokens)
        } catch {
            throw fail(error)
        }
    }

    func write(_ members: [(key: String, value: JSONValue)], ids: [Int], tokens: [String]) throws {
        switch format {
        case .json:
            FileHandle.standardOutput.write(Data((JSONValue.object(members).pythonDumps() + "\n").utf8))
        case .text:
            let lines = zip(ids, tokens).map { "\($0)\t\($1)\n" }.joined()
            FileHandle.standardOutput.write(Data(lines.utf8))
        }
    }

    /// A SentencePiece tokenizer when PATH is a SentencePiece model (a protobuf starting with a
    /// piece, field 1); nil otherwise (a GGUF 'llama' vocabulary is read as transformers reads it,
    /// by BPETokenizer).
    static func sentencePiece(_ path: String) throws -> SentencePieceTokenizer? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let handle = FileHandle(forReadingAtPath: path) else { return nil }
        let magic = [UInt8](handle.readData(ofLength: 4))
        try? handle.close()
        if magic.first == 0x0A { return try SentencePieceTokenizer.load(model: path) }
        return nil
    }

    /// The messages of a `--chat` input: a JSON array of objects with string "role" and "content".
    static func messages(from bytes: [UInt8]) throws -> [ChatMessage] {
        let v = try JSONValue.parse(bytes, file: "<stdin>", field: "(root)")
        guard case .array(let items) = v else {
            throw QLoraError.invalidArgument("--chat: stdin must be a JSON array of {\"role\", \"content\"} messages, got \(v.kind)")
        }
        return try items.enumerated().map { k, item in
            guard case .object = item else { throw QLoraError.invalidArgument("--chat: message \(k) is \(item.kind), not an object") }
            guard case .string(let role)? = item["role"] else { throw QLoraError.invalidArgument("--chat: message \(k) has no string \"role\"") }
            guard case .string(let content)? = item["content"] else {
                throw QLoraError.invalidArgument("--chat: message \(k) has no string \"content\"")
            }
            return ChatMessage(role: role, content: content)
        }
    }
}

enum TokenizeFormat: String, ExpressibleByArgument, CaseIterable {
    case json, text
}
