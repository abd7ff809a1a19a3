import Foundation
import ScratchFiles
import KerasHDF5
import NativeFormat
#if canImport(Glibc)
import Glibc
#endif

/// How Keras files (`.h5`, `.keras`) are parsed. libhdf5 is not written for untrusted
/// input: a damaged or crafted file can crash it (SIGSEGV) or make it loop forever. In a
/// child process with CPU-time and memory limits, that becomes a clear error instead of
/// the death or hang of the program that loads it. See docs/HOSTILE_INPUT.md.
public enum HDF5Isolation: Sendable, Equatable {
    /// libhdf5 runs in this process (one lock serializes its calls): for trusted files only.
    case inProcess
    /// A child process runs `executable --bnkit-hdf5-child …`; the executable must call
    /// `HDF5ChildProcess.serveIfRequested()` first thing (bnconv, bnrun and the
    /// `bnkit-hdf5-reader` helper do). The child hands the model back in the `.bin`
    /// encoding, which is validated on read like any `.bin`.
    case childProcess(executable: String)

    /// The default: a child process when a reader executable is at hand (the one named by
    /// the environment variable `BNKIT_HDF5_READER`, or `bnkit-hdf5-reader` next to the
    /// running executable), otherwise in process.
    public static var automatic: HDF5Isolation {
        if let named = ProcessInfo.processInfo.environment["BNKIT_HDF5_READER"], !named.isEmpty {
            return .childProcess(executable: named)
        }
        let beside = URL(fileURLWithPath: HDF5ChildProcess.currentExecutable).deletingLastPathComponent()
            .appendingPathComponent("bnkit-hdf5-reader").path
        return FileManager.default.isExecutableFile(atPath: beside) ? .childProcess(executable: beside) : .inProcess
    }
}

/// Limits and protocol of the child process that parses Keras files.
public enum HDF5ChildProcess {
    static let flag = "--bnkit-hdf5-child"

    /// How Keras files are read by `Model.load` (set once at start-up; default `HDF5Isolation.automatic`).
    public static var isolation: HDF5Isolation {
        get { state.withLock { $0.isolation } }
        set { state.withLock { $0.isolation = newValue } }
    }

    private struct State: Sendable { var isolation: HDF5Isolation }
    private static let state = Mutex(State(isolation: .automatic))

    /// The running executable (`/proc/self/exe`).
    public static var currentExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Wall-clock and CPU time a child may take for a file of `bytes`: 6 s, plus 2 s per
    /// 100 MB (a 94 MB ResNet50 .h5 parses in well under a second).
    public static func timeLimit(forFileOf bytes: Int) -> Double { 6 + 2 * Double(bytes) / 100e6 }

    /// Memory (private writable data) a child may use for a file of `bytes`: 1 GiB plus
    /// four times the file (the weights read, then encoded).
    public static func memoryLimit(forFileOf bytes: Int) -> Int { (1 << 30) + 4 * bytes }

    /// In the child (arguments `--bnkit-hdf5-child CPU_SECONDS DATA_BYTES PATH OUTPUT`):
    /// limits itself, reads the Keras file in process, writes the model's `.bin` encoding
    /// to OUTPUT (a file in a private folder of the parent's) and exits 0, or writes one
    /// line naming the file and the problem to standard error and exits 65. Returns at
    /// once in any other process.
    public static func serveIfRequested() {
        let arguments = CommandLine.arguments
        guard arguments.count == 6, arguments[1] == flag, let seconds = Int(arguments[2]), let bytes = Int(arguments[3]) else { return }
        // Descriptors the parent had open are none of this process's business.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            if let fd = Int32(entry), fd > 2 { close(fd) }
        }
        var limit = rlimit(rlim_cur: 0, rlim_max: 0)
        setrlimit(Int32(RLIMIT_CORE.rawValue), &limit)
        limit = rlimit(rlim_cur: rlim_t(seconds), rlim_max: rlim_t(seconds + 1))
        setrlimit(Int32(RLIMIT_CPU.rawValue), &limit)
        limit = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
        setrlimit(Int32(RLIMIT_DATA.rawValue), &limit)
        let path = arguments[4]
        do {
            let keras = try KerasModelReader.read(path: path)
            var model = Model(graph: keras.graph)
            model.keras = keras.provenance
            let data = try model.nativeEncoding()
            try data.write(to: URL(fileURLWithPath: arguments[5]))
            exit(0)
        } catch {
            let line = "\(error)".replacingOccurrences(of: "\n", with: " ")
            FileHandle.standardError.write(Data(line.utf8))
            exit(65)
        }
    }

    /// Reads a Keras file in a child process running `executable`.
    static func read(path: String, executable: String) throws -> Model {
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        let seconds = timeLimit(forFileOf: size).rounded(.up)
        // The model comes back through a file in a private folder: the parent maps it (a
        // `.bin` is read in place) instead of copying it through a pipe.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-hdf5-\(UUID().uuidString)")
        let scratch: ScratchFiles.Token
        do {
            scratch = try ScratchFiles.makeTrackedFolder(folder.path)
        } catch {
            throw BNKitError.hdf5ReaderUnavailable(executable: executable, reason: "cannot create a temporary folder: \(error)")
        }
        defer {
            try? FileManager.default.removeItem(at: folder)
            ScratchFiles.untrack(scratch)
        }
        let encoded = folder.appendingPathComponent("model.bin").path
        let result: ChildProcess.Result
        do {
            // Spawned while no HDF5 file is open in this process (they are opened and closed
            // under this lock), so the child inherits none; the child reads without file locks.
            // Its temporary files (a .keras archive's weights, extracted for libhdf5) go in the
            // private folder too, which goes when the child has ended: a child killed for its
            // time or crashed by a hostile file leaves nothing behind in the system's /tmp.
            result = try KerasHDF5Library.serialized {
                try ChildProcess.start(executable, [flag, String(Int(seconds)), String(memoryLimit(forFileOf: size)), path, encoded],
                                       environment: ["HDF5_USE_FILE_LOCKING": "FALSE", "SWIFT_BACKTRACE": "enable=no", "TMPDIR": folder.path])
            }.finish(seconds: seconds)
        } catch {
            throw BNKitError.hdf5ReaderUnavailable(executable: executable, reason: "\(error)")
        }
        let message = String(decoding: result.errors.prefix(2000), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        switch result.ending {
        case .exited(0):
            var model = try Model.readNative(encoded, name: path)
            model.metadata = [:]
            return model
        case .exited(65) where !message.isEmpty:
            throw BNKitError.reported(message)
        case .timedOut:
            throw BNKitError.damagedHDF5(path: path, detail: "the HDF5 reader did not finish within \(Int(seconds)) s (a damaged file can make libhdf5 loop)")
        case .signaled(let signal):
            let what = signal == SIGXCPU || signal == SIGKILL ? "ran out of its CPU time" : "crashed (signal \(signal))"
            throw BNKitError.damagedHDF5(path: path, detail: "the HDF5 reader \(what) on it")
        case .exited(let status):
            throw BNKitError.damagedHDF5(path: path, detail: "the HDF5 reader failed (exit status \(status)\(message.isEmpty ? "" : ": " + message))")
        }
    }
}

/// A value behind a lock (Synchronization's Mutex needs macOS 15 / newer toolchains everywhere; this is enough here).
final class Mutex<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
