import QLoRA

/// The demo's checks: each prints one "ok"/"FAIL" line as it is made; the verdict sums them up.
struct DemoChecks {
    private(set) var passed = 0
    private(set) var failed = 0

    var allPassed: Bool { failed == 0 && passed > 0 }

    var verdict: String {
        allPassed ? "\nverdict: PASS (\(passed) of \(passed) checks)" : "\nverdict: FAIL (\(failed) of \(passed + failed) checks failed)"
    }

    private mutating func record(_ ok: Bool, _ what: String, _ detail: String) {
        if ok { passed += 1 } else { failed += 1 }
        print("  \(ok ? "ok  " : "FAIL") \(what) (\(detail))")
    }

    /// max|a - b| <= tolerance · max|b|.
    mutating func close(_ what: String, _ a: Tensor, _ b: Tensor, tolerance: Float) {
        let (diff, scale) = DemoChecks.maxDiff(a, b)
        record(a.shape == b.shape && diff <= tolerance * scale, what,
               "max |diff| \(diff) vs max |y| \(scale), tolerance \(tolerance) relative")
    }

    mutating func identical(_ what: String, _ a: Tensor, _ b: Tensor) {
        let same = a.shape == b.shape && zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern }
        let differing = zip(a.scalars, b.scalars).filter { $0.bitPattern != $1.bitPattern }.count
        record(same, what, same ? "\(a.count) values bitwise equal" : "\(differing) of \(a.count) values differ")
    }

    mutating func differs(_ what: String, _ a: Tensor, _ b: Tensor) {
        let (diff, scale) = DemoChecks.maxDiff(a, b)
        record(diff > 1e-3 * scale, what, "max |diff| \(diff) vs max |y| \(scale)")
    }

    static func maxDiff(_ a: Tensor, _ b: Tensor) -> (Float, Float) {
        let diff = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? .infinity
        let scale = b.scalars.map { abs($0) }.max() ?? 0
        return (a.count == b.count ? diff : .infinity, scale)
    }
}
