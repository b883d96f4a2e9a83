import Foundation
import XCTest
@testable import QLoRA

/// JSONL datasets (Tests/Fixtures/datasets) with SmolLM2's tokenizer: chat lines labelled as the
/// reference labels of ../shared/reference/smollm2/chat/conversations.json, prompt/completion lines
/// training exactly the completion, text lines everything; bad lines name file and line; batches
/// padded or packed with attention that never crosses examples; seeded shuffling.
final class DatasetTests: XCTestCase {
    static let dir = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/datasets")
    func path(_ name: String) -> String { DatasetTests.dir.appendingPathComponent(name).path }
    func smol() throws -> BPETokenizer { try TokenizerTests.tokenizer.get() }

    func testChatLinesMatchReferenceLabels() throws {
        let t = try smol()
        let examples = try JSONLDataset.load(path: path("chat.jsonl"), tokenizer: t)
        guard case .array(let cases) = try JSONValue.parse(try Reference.bytes("smollm2/chat/conversations.json"), file: "c", field: "$") else { return XCTFail() }
        let byName = Dictionary(uniqueKeysWithValues: cases.compactMap { c -> (String, JSONValue)? in
            guard case .string(let n)? = c["name"] else { return nil }
            return (n, c)
        })
        let names = ["lora_a", "lora_b", "straddle_newlines", "multi_turn_default_system"]
        XCTAssertEqual(examples.count, names.count)
        for (e, name) in zip(examples, names) {
            XCTAssertEqual(e.ids, GGUFTokenizerTests.ints(byName[name]?["ids"]), name)
            XCTAssertEqual(e.labels, GGUFTokenizerTests.ints(byName[name]?["labels"]), name)
        }
        XCTAssertEqual(examples[1].source, path("chat.jsonl") + ":2")
        let all = try JSONLDataset.load(path: path("chat.jsonl"), tokenizer: t, options: DatasetOptions(maskPrompt: false))
        for e in all { XCTAssertEqual(e.labels, e.ids) }
    }

    func testPromptCompletionTrainsTheCompletion() throws {
        let t = try smol()
        let examples = try JSONLDataset.load(path: path("completions.jsonl"), tokenizer: t)
        let completions = [" Teal, with orange stripes.", " 4", " chat"]
        let prompts = ["Q: What colour is the Zorbix?\nA:", "Q: 2+2?\nA:", "Translate to French: cat =>"]
        XCTAssertEqual(examples.count, 3)
        for (k, e) in examples.enumerated() {
            XCTAssertEqual(e.ids, t.encode(prompts[k] + completions[k]) + [2])
            let trained = e.labels.filter { $0 != -100 }
            XCTAssertEqual(try t.decode(trained), completions[k] + "<|im_end|>")
            // The trained tokens are a suffix: the prompt tokens are all masked.
            let firstTrained = e.labels.firstIndex { $0 != -100 }!
            XCTAssertTrue(e.labels[firstTrained...].allSatisfy { $0 != -100 })
            XCTAssertEqual(try t.decode(Array(e.ids[..<firstTrained])), prompts[k])
        }
        let unmasked = try JSONLDataset.load(path: path("completions.jsonl"), tokenizer: t, options: DatasetOptions(maskPrompt: false))
        for e in unmasked { XCTAssertEqual(e.labels, e.ids) }
    }

    func testTextLinesTrainEverythingAndSkipBlankLines() throws {
        let t = try smol()
        let examples = try JSONLDataset.load(path: path("text.jsonl"), tokenizer: t)
        XCTAssertEqual(examples.count, 3)
        XCTAssertEqual(examples[2].source, path("text.jsonl") + ":4")
        XCTAssertEqual(examples[0].ids, t.encode("Zorbix is a made-up gadget that hums in B flat.") + [2])
        for e in examples { XCTAssertEqual(e.labels, e.ids) }
        let noEOS = try JSONLDataset.load(path: path("text.jsonl"), tokenizer: t, options: DatasetOptions(appendEOS: false, maxLength: 5))
        XCTAssertEqual(noEOS[0].ids, Array(t.encode("Zorbix is a made-up gadget that hums in B flat.").prefix(5)))
    }

    func testBadLinesNameFileAndLine() throws {
        let t = try smol()
        func expect(_ text: String, _ needles: [String], line: UInt = #line) {
            XCTAssertThrowsError(try JSONLDataset.parse(Array(text.utf8), file: "data.jsonl", tokenizer: t), line: line) { e in
                for n in needles { XCTAssertTrue("\(e)".contains(n), "\(e) lacks \(n)", line: line) }
            }
        }
        XCTAssertThrowsError(try JSONLDataset.load(path: path("bad_json.jsonl"), tokenizer: t)) { e in
            XCTAssertTrue("\(e)".contains("bad_json.jsonl") && "\(e)".contains("line 3"), "\(e)")
        }
        expect("{\"text\": \"ok\"}\n[1, 2]\n", ["data.jsonl", "line 2", "JSON object"])
        expect("{\"txt\": \"ok\"}\n", ["line 1", "'text'", "txt"])
        expect("{\"text\": 5}\n", ["line 1", "'text' must be a string"])
        expect("{\"prompt\": \"a\"}\n", ["line 1", "'completion'"])
        expect("{\"messages\": [{\"role\": \"user\"}]}\n", ["line 1", "messages[0]"])
        expect("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", ["line 1", "no assistant message"])
        expect("{\"messages\": []}\n", ["line 1", "non-empty"])
        expect("\n  \n", ["data.jsonl", "no examples"])
        expect("{\"text\": \"\"}\n", ["line 1", "nothing to predict"])
    }

    func examples(_ lengths: [Int]) -> [TrainingExample] {
        lengths.enumerated().map { k, n in
            TrainingExample(ids: (0..<n).map { 100 * (k + 1) + $0 }, labels: (0..<n).map { $0 == 0 ? -100 : 100 * (k + 1) + $0 }, source: "e\(k)")
        }
    }

    func testPaddedBatches() throws {
        let it = try BatchIterator(examples: examples([3, 5, 2]), batchSize: 2, layout: .padToLongest(maxLength: nil), padId: 7, seed: 1, shuffle: false)
        let b = it.batches(epoch: 0)
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(b[0].sequenceLength, 5)
        XCTAssertEqual(b[0].inputIds, [100, 101, 102, 7, 7, 200, 201, 202, 203, 204])
        XCTAssertEqual(b[0].labels, [-100, 101, 102, -100, -100, -100, 201, 202, 203, 204])
        XCTAssertEqual(b[0].segmentIds, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1])
        XCTAssertEqual(b[0].shiftedTargets, [101, 102, -100, -100, -100, 201, 202, 203, 204, -100])
        XCTAssertEqual(b[1].batchSize, 1)
        XCTAssertEqual(b[1].sequenceLength, 2)
        let cut = try BatchIterator(examples: examples([3, 5]), batchSize: 2, layout: .padToLongest(maxLength: 4), padId: 0, seed: 1, shuffle: false)
        XCTAssertEqual(cut.batches(epoch: 0)[0].sequenceLength, 4)
    }

    func testPackedBatchesNeverAttendAcrossExamples() throws {
        let it = try BatchIterator(examples: examples([3, 4, 2, 6, 9]), batchSize: 2, layout: .packed(sequenceLength: 8), padId: 0, seed: 1, shuffle: false)
        let b = it.batches(epoch: 0)
        // rows: [3+4], [2+6], [8 of 9]
        XCTAssertEqual(b.count, 2)
        XCTAssertEqual(b[0].segmentIds, [1, 1, 1, 2, 2, 2, 2, 0, 1, 1, 2, 2, 2, 2, 2, 2])
        XCTAssertEqual(b[0].positions, [0, 1, 2, 0, 1, 2, 3, 0, 0, 1, 0, 1, 2, 3, 4, 5])
        XCTAssertEqual(Array(b[0].shiftedTargets[0..<8]), [101, 102, -100, 201, 202, 203, -100, -100])
        XCTAssertEqual(b[1].inputIds, (500..<508).map { Int32($0) })
        XCTAssertEqual(b[0].examples.map(\.source), ["e0", "e1", "e2", "e3"])
        let mask = b[0].attentionMask(row: 0)
        for i in 0..<8 {
            for j in 0..<8 {
                let same = b[0].segmentIds[i] != 0 && b[0].segmentIds[i] == b[0].segmentIds[j] && j <= i
                XCTAssertEqual(mask[i * 8 + j] == 0, same || (b[0].segmentIds[i] == 0 && i == j), "\(i),\(j)")
            }
        }
        XCTAssertEqual(b[0].trainedTargetCount, 2 + 3 + 1 + 5)
    }

    func testSeededShuffle() throws {
        let ex = examples(Array(repeating: 3, count: 20))
        let a = try BatchIterator(examples: ex, batchSize: 4, layout: .padToLongest(maxLength: nil), padId: 0, seed: 42)
        let b = try BatchIterator(examples: ex, batchSize: 4, layout: .padToLongest(maxLength: nil), padId: 0, seed: 42)
        let c = try BatchIterator(examples: ex, batchSize: 4, layout: .padToLongest(maxLength: nil), padId: 0, seed: 43)
        XCTAssertEqual(a.batches(epoch: 0), b.batches(epoch: 0))
        XCTAssertNotEqual(a.order(epoch: 0), c.order(epoch: 0))
        XCTAssertNotEqual(a.order(epoch: 0), a.order(epoch: 1))
        XCTAssertEqual(a.order(epoch: 3).sorted(), Array(0..<20))
        XCTAssertNotEqual(a.order(epoch: 0), Array(0..<20))
        XCTAssertThrowsError(try BatchIterator(examples: ex, batchSize: 0, layout: .packed(sequenceLength: 8), padId: 0, seed: 1))
        XCTAssertThrowsError(try BatchIterator(examples: ex, batchSize: 1, layout: .packed(sequenceLength: 1), padId: 0, seed: 1))
        XCTAssertThrowsError(try BatchIterator(examples: [], batchSize: 1, layout: .packed(sequenceLength: 8), padId: 0, seed: 1))
    }
}
