import Foundation
import QLoRA
#if canImport(Glibc)
import Glibc
#endif

/// Checks an output path before any work is done, so a mistake is reported in the user's terms
/// (not as a failure on an internal temporary file): the directory must exist and accept new
/// files, the path must not be a directory, and an existing read-only file is replaced only with
/// --force. Outputs are then written to a temporary file in that directory and renamed.
struct OutputFile {
    let path: String
    /// Set when an existing read-only file will be replaced (--force).
    private(set) var replacesReadOnly = false

    init(_ path: String, option: String = "--output", force: Bool) throws {
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            if isDirectory.boolValue {
                throw QLoraError.invalidArgument("\(option) \(path) is a directory; give a file path")
            }
            if OutputFile.isReadOnly(path) {
                guard force else {
                    throw QLoraError.invalidArgument("\(option) \(path) exists and is read-only; pass --force to replace it")
                }
                replacesReadOnly = true
            }
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let shown = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw QLoraError.invalidArgument("\(option) \(path): directory \(shown) does not exist")
        }
        guard isDirectory.boolValue else {
            throw QLoraError.invalidArgument("\(option) \(path): \(shown) is not a directory")
        }
        if let reason = OutputFile.cannotCreate(in: directory) {
            throw QLoraError.invalidArgument("\(option) \(path): directory \(shown) is not writable (\(reason))")
        }
    }

    /// Read-only by its permission bits (root may write anyway, but the user marked it so).
    static func isReadOnly(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return access(path, W_OK) != 0 || st.st_mode & 0o222 == 0
    }

    /// Why no new file can be created in `directory` (tried with a probe file), or nil.
    static func cannotCreate(in directory: String) -> String? {
        let probe = directory + "/.qlora-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(probe, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard fd >= 0 else { return String(cString: strerror(errno)) }
        close(fd)
        unlink(probe)
        return nil
    }

    /// The note printed after a --force replacement, or nil.
    var note: String? { replacesReadOnly ? "note: replaced the read-only file \(path) (--force)" : nil }
}
