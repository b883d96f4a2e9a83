import XCTest
@testable import QLoRA

final class ConfigTests: XCTestCase {
    func testDefaults() {
        let c = QLoraConfig()
        XCTAssertEqual(c.rank, 8); XCTAssertEqual(c.alpha, 16); XCTAssertEqual(c.dropout, 0)
        XCTAssertEqual(c.quantType, .nf4); XCTAssertEqual(c.blockSize, 64); XCTAssertTrue(c.doubleQuant)
        XCTAssertEqual(c.computeType, .float32); XCTAssertFalse(c.cacheDequantized); XCTAssertFalse(c.useRSLoRA)
        XCTAssertEqual(c.scaling, 2)
        XCTAssertEqual(c.targetModules.count, 7)
        XCTAssertNoThrow(try c.validate())
    }

    func testRSLoRAScaling() {
        var c = QLoraConfig(); c.rank = 16; c.alpha = 16; c.useRSLoRA = true
        XCTAssertEqual(c.scaling, 4)
    }

    func testValidateRejects() {
        func expectField(_ mutate: (inout QLoraConfig) -> Void, _ field: String) {
            var c = QLoraConfig(); mutate(&c)
            XCTAssertThrowsError(try c.validate()) { error in
                guard case let QLoraError.invalidConfig(f, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(f, field)
            }
        }
        expectField({ $0.rank = 0 }, "rank")
        expectField({ $0.alpha = -1 }, "alpha")
        expectField({ $0.dropout = 1 }, "dropout")
        expectField({ $0.dropout = -0.1 }, "dropout")
        expectField({ $0.blockSize = 48 }, "blockSize")
        expectField({ $0.blockSize = 16 }, "blockSize")
        expectField({ $0.blockSize = 8192 }, "blockSize")
    }

    func testConfigIsCodable() throws {
        var c = QLoraConfig(); c.quantType = .fp4; c.rank = 4
        let data = try JSONEncoder().encode(c)
        XCTAssertEqual(try JSONDecoder().decode(QLoraConfig.self, from: data), c)
    }
}
