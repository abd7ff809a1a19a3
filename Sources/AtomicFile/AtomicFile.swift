import Foundation
import ScratchFiles
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
    /// file is removed and `path` is untouched; so on an interruption that
    /// `ScratchFiles` handles (SIGINT, SIGTERM, SIGHUP in the CLIs).
    public static func replace(_ path: String, write: (String) throws -> Void) throws {
        let pending = try Pending(replacing: path)
        // The writer opens the (empty) temporary by its path itself.
        try? pending.handle.close()
        do {
            try write(pending.temporary)
            try sync(pending.temporary)
            try pending.moveIntoPlace()
        } catch {
            pending.discard()
            throw error
        }
    }

    /// A file written in pieces (a report as batches finish) that appears at `path` only
    /// when complete: `commit()` flushes it to disk and renames it over `path`;
    /// `abandon()`, an error, or an interruption that `ScratchFiles` handles removes it
    /// and leaves `path` as it was.
    public final class Stream {
        public let handle: FileHandle
        private let pending: Pending
        private var ended = false

        public init(replacing path: String) throws {
            pending = try Pending(replacing: path)
            handle = pending.handle
        }

        public func commit() throws {
            guard !ended else { return }
            ended = true
            do {
                try handle.synchronize()
                try handle.close()
                try pending.moveIntoPlace()
            } catch let error as WriteError {
                pending.discard()
                throw error
            } catch {
                pending.discard()
                throw WriteError(path: pending.path, detail: error.localizedDescription)
            }
        }

        public func abandon() {
            guard !ended else { return }
            ended = true
            try? handle.close()
            pending.discard()
        }

        deinit { abandon() }
    }

    /// A hidden temporary file in the target's folder (the rename stays on one file system),
    /// made and tracked by `ScratchFiles` at once, until it is renamed into place or removed.
    private struct Pending {
        let path: String
        let folder: String
        let temporary: String
        let scratch: ScratchFiles.Token
        /// The temporary, open for reading and writing.
        let handle: FileHandle

        init(replacing path: String) throws {
            let url = URL(fileURLWithPath: path)
            self.path = path
            folder = url.deletingLastPathComponent().path
            temporary = folder + "/." + url.lastPathComponent + ".\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
            do {
                (handle, scratch) = try ScratchFiles.createTrackedFile(temporary)
            } catch {
                throw WriteError(path: path, detail: "cannot create a file in \(folder): \(String(cString: strerror(error.code)))")
            }
        }

        /// Renames the (flushed) temporary over the target, then makes the rename durable.
        func moveIntoPlace() throws {
            try ScratchFiles.settle(scratch) {
                guard rename(temporary, path) == 0 else { throw WriteError(path: path, detail: errnoText()) }
            }
            let fd = open(folder, O_RDONLY)
            if fd >= 0 { _ = fsync(fd); close(fd) }
        }

        func discard() {
            unlink(temporary)
            ScratchFiles.untrack(scratch)
        }
    }

    /// Writes `data` to `path` atomically.
    public static func write(_ data: Data, to path: String) throws {
        let stream = try Stream(replacing: path)
        do {
            try stream.handle.write(contentsOf: data)
        } catch {
            stream.abandon()
            throw WriteError(path: path, detail: error.localizedDescription)
        }
        try stream.commit()
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
