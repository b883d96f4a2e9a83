import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A model directory written atomically: files go into a hidden sibling directory, and
/// `commit()` renames it to the destination (replacing an existing directory only when
/// `replace` is set). Until then, and after any error, nothing appears at the destination; a
/// staged directory that was not committed is removed when the value is dropped.
public final class StagedDirectory {
    public let destination: URL
    /// Where the files are written before the commit.
    public let staging: URL
    private let replace: Bool
    private var committed = false

    public init(destination: URL, replace: Bool) throws {
        self.destination = destination
        self.replace = replace
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: destination.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw QLoraError.io(file: destination.path, reason: "exists and is not a directory")
            }
            guard replace else {
                throw QLoraError.io(file: destination.path, reason: "already exists (pass --force to replace it)")
            }
        }
        let parent = destination.deletingLastPathComponent()
        guard FileManager.default.fileExists(atPath: parent.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw QLoraError.io(file: parent.path, reason: "the output's parent directory does not exist")
        }
        staging = URL(fileURLWithPath: POSIXFile.siblingPath(of: destination, suffix: "tmp"))
        do { try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: false) } catch {
            throw QLoraError.io(file: staging.path, reason: "cannot create the staging directory: \(error.localizedDescription)")
        }
    }

    deinit { if !committed { try? FileManager.default.removeItem(at: staging) } }

    /// The URL of `name` inside the staging directory.
    public func file(_ name: String) -> URL { staging.appendingPathComponent(name) }

    /// Writes `bytes` as `name` (plain write: the whole directory is renamed into place at the end).
    public func write(_ name: String, _ bytes: Data) throws {
        do { try bytes.write(to: file(name)) } catch {
            throw QLoraError.io(file: file(name).path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// Copies `source` into the staging directory under its own name.
    public func copy(_ source: URL) throws {
        do { try FileManager.default.copyItem(at: source, to: file(source.lastPathComponent)) } catch {
            throw QLoraError.io(file: source.path, reason: "cannot copy into \(staging.path): \(error.localizedDescription)")
        }
    }

    /// Moves the staged directory to the destination.
    public func commit() throws {
        guard !committed else { return }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: staging.path)) ?? [] {
            let fd = open(file(name).path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { fsync(fd); close(fd) }
        }
        var old: String?
        if FileManager.default.fileExists(atPath: destination.path) {
            guard replace else { throw QLoraError.io(file: destination.path, reason: "appeared while writing; not replaced") }
            let aside = POSIXFile.siblingPath(of: destination, suffix: "old")
            guard rename(destination.path, aside) == 0 else { throw POSIXFile.error(destination.path, "cannot move the old directory aside") }
            old = aside
        }
        guard rename(staging.path, destination.path) == 0 else {
            let error = POSIXFile.error(destination.path, "cannot rename \(staging.path) to it")
            if let old { rename(old, destination.path) }
            throw error
        }
        committed = true
        if let old { try? FileManager.default.removeItem(atPath: old) }
        try POSIXFile.syncDirectory(of: destination.path)
    }
}
