import XCTest
@testable import QLoRA

/// The double-quant offset is bitsandbytes' absmax.mean(): torch's float32 CPU sum in its own
/// cascade order (torch_f32_sum.c), divided by n in float32. A double-accumulated mean differs
/// from it in the last bit for most real tensors, so these cases check the bits.
final class DoubleQuantOffsetTests: XCTestCase {
    /// smollm2/manifest.json nf4_state_samples: the absmax of three SmolLM2-135M projections as
    /// bitsandbytes computed them, with the offset it stored (offset_hex) and the resulting state.
    func testSmolLM2SampleOffsetsAndStatesAreBitExact() throws {
        let manifest = try Reference.manifest("smollm2/manifest.json")
        let samples = try XCTUnwrap(manifest["nf4_state_samples"] as? [String: [String: Any]])
        XCTAssertEqual(samples.count, 3)
        func file(_ entry: [String: Any], _ key: String) throws -> String {
            "smollm2/" + (try XCTUnwrap((entry[key] as? [String: Any])?["file"] as? String, key))
        }
        var differsFromDoubleMean = 0
        for (name, entry) in samples {
            let absmax = try Reference.floats(file(entry, "absmax"))
            let state = DoubleQuantState.quantize(absmax: absmax, offset: nil)
            XCTAssertEqual(String(format: "%08x", state.offset.bitPattern), entry["offset_hex"] as? String, "\(name) offset")
            XCTAssertEqual(state.quantizedAbsmax, try Reference.bytes(file(entry, "qabsmax")), "\(name) qabsmax")
            assertBitIdentical(state.absmax2, try Reference.floats(file(entry, "absmax2")), "\(name) absmax2")
            assertBitIdentical(state.code2, try Reference.floats("smollm2/nf4/dq_code2.f32"), "\(name) code2")
            let doubleMean = Float(absmax.reduce(0.0) { $0 + Double($1) } / Double(absmax.count))
            if doubleMean.bitPattern != state.offset.bitPattern { differsFromDoubleMean += 1 }
        }
        // The summation order matters here: a double-accumulated mean gets these offsets wrong.
        XCTAssertGreaterThan(differsFromDoubleMean, 0)
    }

    /// Every element is added exactly once, whatever n: with small integers every partial sum is
    /// exact, so any order gives float(sum) / float(n). The sizes cover the leftover scalars
    /// (n % 8), leftover vectors (n / 8 % 4), and one, two and three levels of the cascade.
    func testEveryElementIsSummedOnce() {
        var rng = SeededRandom(seed: 11)
        for n in [1, 7, 8, 9, 31, 32, 33, 100, 511, 512, 513, 8192 + 77, 131_072, 131_072 * 2 + 8 * 4 * 3 + 8 + 5] {
            let values = (0..<n).map { _ in Float(Int(rng.next() % 3)) }
            let exact = values.reduce(0, +) // exact: every partial sum is an integer below 2^24
            let offset = DoubleQuantState.quantize(absmax: values, offset: nil).offset
            XCTAssertEqual(offset.bitPattern, (exact / Float(n)).bitPattern, "n = \(n)")
        }
    }
}
