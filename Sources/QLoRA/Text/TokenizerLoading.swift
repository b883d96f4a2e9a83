import Foundation

extension BPETokenizer {
    /// Loads a tokenizer from what users point at: a `tokenizer.json` file (with
    /// `tokenizer_config.json` beside it, if present, for the chat template and special tokens),
    /// a directory holding one (a Hugging Face model folder), or a GGUF file (its
    /// `tokenizer.ggml.*` metadata). The kind is decided by the content, not the name.
    public static func load(path: String) throws -> BPETokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw QLoraError.io(file: path, reason: "no such file or directory")
        }
        if isDirectory.boolValue {
            let json = URL(fileURLWithPath: path).appendingPathComponent("tokenizer.json").path
            guard FileManager.default.fileExists(atPath: json) else {
                throw QLoraError.invalidArgument("\(path) is a directory without a tokenizer.json (give a tokenizer.json, a model directory holding one, or a GGUF file)")
            }
            return try load(tokenizerJSON: json)
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw QLoraError.io(file: path, reason: "cannot read the file") }
        let magic = [UInt8](handle.readData(ofLength: 4))
        try? handle.close()
        if magic == Array("GGUF".utf8) { return try load(gguf: path) }
        if magic.first.map({ $0 == UInt8(ascii: "{") || $0 == 0x20 || $0 == 0x0A || $0 == 0x09 || $0 == 0xEF }) ?? false {
            return try load(tokenizerJSON: path)
        }
        throw QLoraError.wrongFileType(file: path, expected: "a tokenizer.json, a directory holding one, or a GGUF file",
                                       reason: "it starts with neither '{' nor the GGUF magic")
    }
}
