import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A one-line progress bar on stderr. It only appears when stderr is a terminal and the run has
/// already taken half a second, so short runs and redirected output stay clean.
final class ProgressBar {
    private let start = Date()
    private let enabled = isatty(STDERR_FILENO) != 0
    private var drawn = false

    func update(done: Int, total: Int, item: String) {
        guard enabled, Date().timeIntervalSince(start) > 0.5, total > 0 else { return }
        let width = 30
        let filled = width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let label = item.count > 40 ? "…" + item.suffix(39) : item
        FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(done)/\(total) \(label)".utf8))
        drawn = true
    }

    /// Clears the bar so the summary and errors start on a clean line.
    func finish() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }
}
