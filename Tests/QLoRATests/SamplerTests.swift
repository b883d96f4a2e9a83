import Foundation
import XCTest
@testable import QLoRA

/// The sampler against transformers' warpers (Tests/Fixtures/sampling, made by make_fixtures.py):
/// the same surviving tokens with the same probabilities; draws follow those probabilities and
/// repeat for a seed.
final class SamplerTests: XCTestCase {
    struct Case: Decodable {
        var logits: [Float], temperature: Float, top_k: Int, top_p: Float, ids: [Int], probs: [Double]
    }

    func cases() throws -> [Case] {
        struct File: Decodable { var cases: [Case] }
        let url = Reference.projectRoot.appendingPathComponent("Tests/Fixtures/sampling/sampling_cases.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases
    }

    func testWarpersKeepTheTokensAndProbabilitiesTransformersKeeps() throws {
        let all = try cases()
        XCTAssertEqual(all.count, 48)
        for (n, c) in all.enumerated() {
            let got = TokenSampler.candidates(c.logits[...], temperature: c.temperature, topK: c.top_k, topP: c.top_p)
            XCTAssertEqual(got.map(\.id).sorted(), c.ids, "case \(n): surviving ids")
            let byID = Dictionary(uniqueKeysWithValues: got.map { ($0.id, $0.p) })
            for (id, p) in zip(c.ids, c.probs) {
                XCTAssertEqual(byID[id] ?? -1, p, accuracy: 2e-6, "case \(n): probability of token \(id)")
            }
        }
    }

    func testGreedyIsArgmaxWithTheLowestIndexOnTies() throws {
        var s = TokenSampler.greedy
        XCTAssertEqual(s.next([1, 3, 3, 0.5, 3][...]), 1)
        XCTAssertEqual(s.next([9, -5, -1, -7][1...]), 1, "ids are relative to the slice")
    }

    func testDrawsFollowTheProbabilitiesAndRepeatForASeed() throws {
        let logits: [Float] = [2, 1, 0.5, -1, 0.25]
        let expected = TokenSampler.candidates(logits[...], temperature: 0.9, topK: 4, topP: 0.95)
        var a = TokenSampler(temperature: 0.9, topK: 4, topP: 0.95, seed: 42), b = a
        var counts = [Int: Int]()
        let n = 40000
        for _ in 0..<n {
            let t = a.next(logits[...])
            XCTAssertEqual(t, b.next(logits[...]))
            counts[t, default: 0] += 1
        }
        for c in expected {
            let freq = Double(counts[c.id] ?? 0) / Double(n)
            // 5 standard deviations of a binomial proportion.
            XCTAssertEqual(freq, c.p, accuracy: 5 * (c.p * (1 - c.p) / Double(n)).squareRoot() + 1e-9, "token \(c.id)")
        }
        XCTAssertEqual(Set(counts.keys), Set(expected.map(\.id)), "only surviving tokens are drawn")
    }

    func testLossCurvePictureHasOnePolylinePerSeriesAndEscapesText() throws {
        let svg = LossCurveSVG(title: "loss <demo>", series: [
            .init(name: "train", color: "#1f77b4", points: [(0, 3.9), (1, 2.0), (2, 0.5)]),
            .init(name: "valid", color: "#d62728", points: [(0, 4.0), (2, 1.0)]),
        ]).render()
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, 2)
        XCTAssertTrue(svg.contains("loss &lt;demo&gt;"))
        XCTAssertTrue(svg.hasPrefix("<svg"))
        XCTAssertEqual(LossCurveSVG.niceCeiling(3.9), 5)
        XCTAssertEqual(LossCurveSVG.niceCeiling(0.21), 0.25)
    }
}
