import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Scratch files and folders (an output's temporary file, an archive member extracted for a
/// reader, a helper process's folder) and helper processes, tracked while they exist so that
/// an interrupted process leaves none of them behind.
///
/// The code that makes one removes it itself when its work ends, and untracks it. A command-line
/// tool calls `removeOnInterruption()` once at start; then SIGINT, SIGTERM or SIGHUP kills the
/// tracked helper processes, removes the tracked paths and ends the process by the same signal
/// (a shell sees status 128 + n). Nothing else is done in the signal handler: it wakes a thread
/// that does the work outside signal context, while the tracking lock keeps every other thread
/// from making a new scratch path or renaming one into place. A second signal while that runs
/// ends the process at once. SIGKILL cannot be caught: what it interrupts stays.
public enum ScratchFiles {
    /// A tracked path or process.
    public struct Token: Hashable, Sendable {
        fileprivate let id: Int
    }

    /// Runs `spawn` (which starts a helper process and returns it with its id) under the tracking
    /// lock and tracks the process, so an interruption cannot fall between its start and its
    /// tracking: on interruption it is killed (SIGKILL) and waited for before the paths go.
    public static func trackingChild<T>(_ spawn: () throws -> (T, pid_t)) rethrows -> (T, Token) {
        try registry.withLock { registry in
            let (value, pid) = try spawn()
            return (value, registry.add(.child(pid)))
        }
    }

    /// Stops tracking (the work removed the path, or moved it into place, or reaped the process).
    public static func untrack(_ token: Token) {
        registry.withLock { _ = $0.entries.removeValue(forKey: token.id) }
    }

    /// Runs `body` (the rename that turns a scratch file into the output) under the tracking
    /// lock, then untracks `token`: an interruption is handled wholly before it (the scratch
    /// file removed, the old output kept) or wholly after it (the new output in place).
    public static func settle<T>(_ token: Token, _ body: () throws -> T) rethrows -> T {
        try registry.withLock { registry in
            defer { registry.entries.removeValue(forKey: token.id) }
            return try body()
        }
    }

    /// Creates the file `path` (which must not exist) and opens it for reading and writing, or returns nil
    /// with `errno` set. For scratch files and outputs' temporaries: Foundation's
    /// `FileManager.createFile` writes a hidden `.dat.nosync…` file beside `path` and renames it
    /// over `path`, and an interruption between the two leaves that untracked file behind.
    public static func createFile(_ path: String, permissions: mode_t = 0o666) -> FileHandle? {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard fd >= 0 else { return nil }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// Why a tracked file or folder could not be made: the system's error for `path`.
    public struct CreateError: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let code: Int32
        public var description: String { "\(path): \(String(cString: strerror(code)))" }
    }

    /// Creates the file `path` (which must not exist), opened for reading and writing, and tracks
    /// it, both under the tracking lock: an interruption is handled wholly before (nothing made)
    /// or wholly after (made, tracked, removed). Tracking a path and making it after, a signal
    /// between the two had the cleaner find nothing to remove and the path made behind it.
    public static func createTrackedFile(_ path: String, permissions: mode_t = 0o666) throws(CreateError) -> (FileHandle, Token) {
        let made: Result<(FileHandle, Token), CreateError> = registry.withLock { registry in
            guard let handle = createFile(path, permissions: permissions) else { return .failure(CreateError(path: path, code: errno)) }
            return .success((handle, registry.add(.path(path))))
        }
        return try made.get()
    }

    /// Makes the folder `path` (its parent must exist) and tracks it, both under the tracking
    /// lock, as `createTrackedFile` does a file.
    public static func makeTrackedFolder(_ path: String, permissions: mode_t = 0o700) throws(CreateError) -> Token {
        let made: Result<Token, CreateError> = registry.withLock { registry in
            guard mkdir(path, permissions) == 0 else { return .failure(CreateError(path: path, code: errno)) }
            return .success(registry.add(.path(path)))
        }
        return try made.get()
    }

    /// Installs the handlers (once; later calls do nothing) for `signals` that this process does
    /// not already ignore: a tool started with SIGINT ignored (in the background of a
    /// non-interactive shell, under nohup) keeps ignoring it.
    public static func removeOnInterruption(signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]) {
        registry.withLock { registry in
            guard !registry.installed else { return }
            var ends: [Int32] = [-1, -1]
            guard pipe(&ends) == 0 else { return }
            for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            registry.installed = true
            interruptionPipe = ends[1]
            let reader = ends[0]
            Thread.detachNewThread { cleanUpWhenInterrupted(reading: reader) }
            for signal in signals {
                var previous = sigaction()
                guard sigaction(signal, nil, &previous) == 0, !isIgnored(previous) else { continue }
                var action = sigaction()
                setHandler(&action)
                sigemptyset(&action.sa_mask)
                action.sa_flags = Int32(SA_RESTART)
                sigaction(signal, &action, nil)
            }
        }
    }

    // MARK: - Internals

    fileprivate enum Entry {
        case path(String)
        case child(pid_t)
    }

    fileprivate struct Registry {
        var entries: [Int: Entry] = [:]
        var next = 0
        var installed = false

        mutating func add(_ entry: Entry) -> Token {
            next += 1
            entries[next] = entry
            return Token(id: next)
        }
    }

    private final class Locked: @unchecked Sendable {
        private var registry = Registry()
        private let lock = NSLock()

        func withLock<T>(_ body: (inout Registry) throws -> T) rethrows -> T {
            lock.lock()
            defer { lock.unlock() }
            return try body(&registry)
        }

        /// Takes the lock for good: the process ends while holding it.
        func takeForGood() -> Registry {
            lock.lock()
            return registry
        }
    }

    private static let registry = Locked()

    /// Waits for the handler's byte, then kills, waits for and removes what is tracked, and ends
    /// the process by the signal that came.
    private static func cleanUpWhenInterrupted(reading fd: Int32) {
        var byte: UInt8 = 0
        while true {
            let count = read(fd, &byte, 1)
            if count == 1 { break }
            if count < 0 && errno == EINTR { continue }
            return
        }
        let signal = Int32(byte)
        let tracked = registry.takeForGood()
        for case .child(let pid) in tracked.entries.values { kill(pid, SIGKILL) }
        for case .child(let pid) in tracked.entries.values {
            // Dead (a zombie) before its folder goes; left for its waiter to reap.
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        }
        for case .path(let path) in tracked.entries.values { remove(path) }
        endBy(signal)
    }

    /// Removes `path`, a folder with what it holds. Another thread may still be writing a file
    /// into a tracked folder (an archive member extracted) until the folder is gone, so that a
    /// removal can find it not empty: tried again, a bounded number of times.
    private static func remove(_ path: String) {
        for _ in 0..<100 {
            if (try? FileManager.default.removeItem(atPath: path)) != nil { return }
            var status = stat()
            if lstat(path, &status) != 0 { return }
        }
    }

    private static func endBy(_ signal: Int32) -> Never {
        restoreDefault(signal)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        kill(getpid(), signal)
        // A signal whose default is not to end the process (none of the ones installed).
        _exit(128 + signal)
    }

    private static func isIgnored(_ action: sigaction) -> Bool {
        unsafeBitCast(action.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
    }

    private static func setHandler(_ action: inout sigaction) {
        action.__sigaction_handler.sa_handler = { signal in onInterruption(signal) }
    }
}

// Read by the signal handler: written once before any handler is installed.
nonisolated(unsafe) private var interruptionPipe: Int32 = -1
nonisolated(unsafe) private var interrupted: sig_atomic_t = 0

/// The signal handler: async-signal-safe calls only. The first signal wakes the cleaning thread;
/// a second one while it works ends the process at once.
private func onInterruption(_ signal: Int32) {
    if interrupted != 0 {
        restoreDefault(signal)
        raise(signal)
        return
    }
    interrupted = 1
    var byte = UInt8(truncatingIfNeeded: signal)
    _ = write(interruptionPipe, &byte, 1)
}

/// `signal`'s default action back (async-signal-safe: sigemptyset and sigaction only).
private func restoreDefault(_ signal: Int32) {
    var action = sigaction()
    action.__sigaction_handler.sa_handler = SIG_DFL
    sigemptyset(&action.sa_mask)
    sigaction(signal, &action, nil)
}
