import Foundation
@testable import QLoRA

/// One libFuzzer entry point for every reader; `QLORA_FUZZ_TARGET` (set by `make fuzz`) picks the
/// target. Each target feeds the bytes to a reader and then uses what it returned the way the
/// library does. Any `QLoraError` is a clean rejection; a trap, a sanitizer report, a leak, an
/// allocation over -malloc_limit_mb or a failed property is a finding.
enum FuzzTarget: String, CaseIterable {
    case safetensors, bnbQuantState = "bnb-quant-state", bnbCheckpoint = "bnb-checkpoint", gguf
    case adapterConfig = "adapter-config", adapter, tokenizerJSON = "tokenizer-json"
    case tokenizerRoundTrip = "tokenizer-roundtrip", graphJSON = "graph-json"
    case chatTemplate = "chat-template", jsonlDataset = "jsonl-dataset"

    func run(_ bytes: [UInt8]) throws {
        switch self {
        case .safetensors: try Self.safetensors(bytes)
        case .bnbQuantState: _ = try BnbQuantState.parse(bytes, expectedType: .nf4, file: "fuzz", field: "w.quant_state.bitsandbytes__nf4")
        case .bnbCheckpoint: try Self.bnbCheckpoint(bytes)
        case .gguf: try Self.gguf(bytes)
        case .adapterConfig:
            let c = try LoraAdapterConfig.parse(bytes, file: "adapter_config.json")
            _ = (c.rank(for: "model.layers.0.mlp.up_proj"), c.scaling(for: "q_proj"), c.targets("v_proj"))
        case .adapter: try Self.adapter(bytes)
        case .tokenizerJSON: try Self.tokenizerJSON(bytes)
        case .tokenizerRoundTrip: TokenizerRoundTrip.check(bytes)
        case .graphJSON: try Self.graphJSON(bytes)
        case .chatTemplate: try Self.chatTemplate(bytes)
        case .jsonlDataset: try Self.jsonlDataset(bytes)
        }
    }

    static func safetensors(_ bytes: [UInt8]) throws {
        let file = try SafeTensorsFile(data: Data(bytes), path: "fuzz.safetensors")
        for name in file.names {
            let info = try file.info(name)
            _ = try file.bytes(name)
            if info.dtype.isFloatingPoint { _ = try file.tensor(name) }
        }
    }

    static func bnbCheckpoint(_ bytes: [UInt8]) throws {
        let checkpoint = try BnbCheckpoint(file: SafeTensorsFile(data: Data(bytes), path: "fuzz.safetensors"))
        for name in checkpoint.quantizedNames {
            _ = try checkpoint.tensor(name, threads: 1)
        }
    }

    static func gguf(_ bytes: [UInt8]) throws {
        let file = try GGUFFile(data: Data(bytes), path: "fuzz.gguf")
        for key in file.metadata.keys { _ = try? file.metadata.string(key); _ = try? file.metadata.int(key) }
        for name in file.names {
            _ = try file.dequantize(name, threads: 1)
        }
    }

    /// Input: a 2-byte little-endian length L, L bytes of adapter_config.json, then the
    /// adapter_model.safetensors image.
    static func adapter(_ bytes: [UInt8]) throws {
        guard bytes.count >= 2 else { return }
        let n = Int(bytes[0]) | Int(bytes[1]) << 8
        guard bytes.count >= 2 + n else { return }
        let config = try LoraAdapterConfig.parse(Array(bytes[2..<(2 + n)]), file: "adapter_config.json")
        let file = try SafeTensorsFile(data: Data(bytes[(2 + n)...]), path: "adapter_model.safetensors")
        let adapter = try LoraAdapter(config: config, file: file)
        for (_, m) in adapter.modules { _ = (m.rank, m.scaling) }
    }

    static func tokenizerJSON(_ bytes: [UInt8]) throws {
        let t = try BPETokenizer(tokenizerJSON: bytes, file: "tokenizer.json")
        let ids = t.encode("Hello, wörld! 12345 <|im_start|>  \n\t🙂", addSpecialTokens: true)
        _ = try t.decode(ids)
        _ = try t.decode(ids, skipSpecialTokens: true)
        for id in [-1, 0, 1, t.vocabularySize - 1, t.vocabularySize] { _ = try? t.bytes(of: id); _ = t.token(of: id) }
    }

    static func graphJSON(_ bytes: [UInt8]) throws {
        let def = try GraphDefinition.parse(bytes, file: "fuzz.json")
        // Without weights the loader makes zero weights sized by the file's own dims; the caller
        // bounds sizes it reads from untrusted files, as `qlora` does with --dim.
        // Skipped when the file holds a number of 4 or more digits.
        var digits = 0
        for b in bytes {
            digits = (0x30...0x39).contains(b) ? digits + 1 : 0
            if digits >= 4 { return }
        }
        _ = try def.load(weights: nil)
    }

    /// A fixed conversation every template is rendered with (system, user, assistant, user; one
    /// message with a non-ASCII and a markup-looking content).
    static let messages = [
        ChatMessage(role: "system", content: "You are terse."),
        ChatMessage(role: "user", content: "Hi {{ there }} <|im_end|> wörld 🙂"),
        ChatMessage(role: "assistant", content: "Hello."),
        ChatMessage(role: "user", content: ""),
    ]

    /// Input: template text (invalid UTF-8 is repaired the way String(decoding:) does). Parse, then
    /// render with and without the generation prompt; the interpreter bounds nesting, recursion,
    /// ranges and output, so everything must end in a string or a QLoraError.
    static func chatTemplate(_ bytes: [UInt8]) throws {
        let template = try ChatTemplate(String(decoding: bytes, as: UTF8.self))
        let tokens = ["bos_token": "<s>", "eos_token": "</s>"]
        _ = try template.render(messages, addGenerationPrompt: true, specialTokens: tokens)
        _ = try template.render(Array(messages.prefix(2)), addGenerationPrompt: false, specialTokens: tokens)
    }

    /// SmolLM2's tokenizer (with its chat template from tokenizer_config.json), loaded once;
    /// QLORA_FUZZ_TOKENIZER overrides the path (make fuzz runs from the repository root).
    static let smolTokenizer: BPETokenizer = {
        let path = ProcessInfo.processInfo.environment["QLORA_FUZZ_TOKENIZER"] ?? "../shared/reference/smollm2/tokenizer/tokenizer.json"
        do { return try BPETokenizer.load(path: path) } catch { fatalError("jsonl-dataset needs SmolLM2's tokenizer at \(path): \(error)") }
    }()

    /// Input: a JSONL file. Parsed with prompt masking, without it and with a maximum length; every
    /// example must keep ids and labels the same length, ids in the vocabulary, and train something.
    static func jsonlDataset(_ bytes: [UInt8]) throws {
        let t = smolTokenizer
        for options in [DatasetOptions(), DatasetOptions(maskPrompt: false), DatasetOptions(maxLength: 3)] {
            let examples: [TrainingExample]
            do { examples = try JSONLDataset.parse(bytes, file: "fuzz.jsonl", tokenizer: t, options: options) } catch is QLoraError { continue }
            for e in examples {
                precondition(e.ids.count == e.labels.count && e.ids.count >= 2, "ids/labels mismatch")
                precondition(e.ids.allSatisfy { $0 >= 0 && $0 < t.vocabularySize }, "id out of the vocabulary")
                precondition(e.labels.allSatisfy { $0 == TrainingExample.ignoredLabel || ($0 >= 0 && $0 < t.vocabularySize) }, "bad label")
                precondition(e.trainedCount > 0, "nothing trained")
                if let m = options.maxLength { precondition(e.ids.count <= m, "longer than maxLength") }
            }
        }
    }
}
