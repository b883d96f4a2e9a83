import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A thin owner of a POSIX file descriptor whose every failure is a `QLoraError.io` naming the
/// file and the system's reason. Used for the writer's spill and temporary files.
final class POSIXFile {
    let path: String
    private(set) var fd: Int32

    /// Creates (or truncates) `path` for reading and writing, mode 0644.
    init(creating path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXFile.error(path, "cannot create") }
    }

    deinit { if fd >= 0 { close(fd) } }

    static func error(_ path: String, _ what: String) -> QLoraError {
        .io(file: path, reason: "\(what): \(String(cString: strerror(errno)))")
    }

    /// Appends all of `bytes` at the current position.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIXFile.error(path, "write failed")
            }
            done += n
        }
    }

    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Reads exactly `into.count` bytes at `offset`.
    func read(at offset: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw POSIXFile.error(path, "read failed") }
            done += n
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw POSIXFile.error(path, "fsync failed") }
    }

    func closeFile() throws {
        let r = close(fd)
        fd = -1
        guard r == 0 else { throw POSIXFile.error(path, "close failed") }
    }

    /// fsync(2)s the directory holding `path`, so a rename into it survives a power loss.
    static func syncDirectory(of path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXFile.error(dir, "cannot open directory") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw POSIXFile.error(dir, "fsync of the directory failed") }
    }

    /// A hidden sibling of `url` with a unique suffix, in the same directory so rename(2) is atomic.
    static func siblingPath(of url: URL, suffix: String) -> String {
        let dir = url.deletingLastPathComponent().path
        let unique = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        return dir + "/." + url.lastPathComponent + "." + unique + "." + suffix
    }
}
