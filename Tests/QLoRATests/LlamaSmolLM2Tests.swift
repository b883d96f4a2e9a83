import Foundation
import XCTest
@testable import QLoRA

/// SmolLM2-135M-Instruct (the Q4_1 GGUF `make model` fetches) converted to NF4 at load, against
/// transformers with the canonical NF4 weights (../shared/reference/smollm2/nf4): the last
/// position's logits of the three reference prompts (prefill through all 30 layers).
final class LlamaSmolLM2Tests: XCTestCase {
    func testNF4ModelLastPositionLogitsMatchTransformers() throws {
        let file = GGUFSmolLM2Tests.modelFile
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw XCTSkip("\(file.path) is absent: run `make model` to fetch SmolLM2-135M-Instruct")
        }
        let model = try LlamaModel.load(file)
        let c = model.config
        XCTAssertEqual([c.layers, c.hiddenSize, c.heads, c.kvHeads, c.headDim, c.vocabSize], [30, 576, 9, 3, 64, 49152])
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertNil(model.lmHead)
        let outputs = try JSONValue.parse(Reference.bytes("smollm2/nf4/outputs.json"), file: "outputs.json", field: "$")
        guard case let .array(prompts)? = outputs["prompts"] else { return XCTFail("nf4/outputs.json: prompts") }
        XCTAssertEqual(prompts.count, 3)
        for p in prompts {
            guard case let .string(name)? = p["name"], case let .array(idValues)? = p["input_ids"],
                  case let .string(logitsFile)? = p["last_logits_file"] else { return XCTFail("nf4/outputs.json prompt") }
            let ids = idValues.compactMap(\.doubleValue).map { Int32($0) }
            let logits = try model.logits(IntTensor(shape: [1, ids.count], scalars: ids))
            let last = Array(logits.scalars[((ids.count - 1) * c.vocabSize)...])
            assertClose(last, try Reference.floats("smollm2/\(logitsFile)"), relative: 1e-4, "\(name): last-position logits")
        }
    }
}
