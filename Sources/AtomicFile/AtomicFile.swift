import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writing a file so that readers (and crashes) see either the old file or
/// the complete new one, never a part.
public enum AtomicFile {
    /// A failure to write `path`.
    public struct WriteError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let detail: String
        public var description: String { "\(path): cannot write: \(detail)" }
    }

    /// Calls `write` with a temporary path in `path`'s folder, flushes the
    /// result to disk and renames it over `path`. On any error the temporary
    /// file is removed and `path` is untouched.
    public static func replace(_ path: String, write: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/." + url.lastPathComponent + ".\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        do {
            try write(temporary)
            try sync(temporary)
            guard rename(temporary, path) == 0 else { throw WriteError(path: path, detail: errnoText()) }
            // Make the rename itself durable.
            let fd = open(folder, O_RDONLY)
            if fd >= 0 { _ = fsync(fd); close(fd) }
        } catch {
            unlink(temporary)
            throw error
        }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        try replace(path) { temporary in
            guard FileManager.default.createFile(atPath: temporary, contents: data) else {
                throw WriteError(path: path, detail: "cannot create a file in \(URL(fileURLWithPath: path).deletingLastPathComponent().path): \(errnoText())")
            }
        }
    }

    private static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw WriteError(path: path, detail: errnoText()) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw WriteError(path: path, detail: errnoText()) }
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}
