import Foundation
import ScratchFiles
#if canImport(Glibc)
import Glibc
#endif

/// A child process run to completion with a wall-clock limit, its standard output and
/// error collected (posix_spawn, pipes read with poll; no run loop, so no polling delay).
/// The pipes are close-on-exec, so children started at once from several threads do not
/// inherit one another's pipes. A child is tracked by `ScratchFiles` from its start to its
/// reaping, so an interrupted parent kills it before removing its scratch files.
struct ChildProcess {
    private static let spawnLock = NSLock()

    enum Ending: Equatable {
        case exited(Int32)
        case signaled(Int32)
        case timedOut
    }

    struct Result {
        var ending: Ending
        var output: Data
        var errors: Data
    }

    struct LaunchError: Error, CustomStringConvertible {
        let description: String
    }

    /// A started child whose output is still to be collected.
    struct Running {
        let pid: pid_t
        let output: Int32, errors: Int32
        let tracking: ScratchFiles.Token

        /// Collects the output until the child closes it; kills the child (SIGKILL) after
        /// `seconds`. Standard error is kept up to `errorLimit` bytes.
        func finish(seconds: Double, errorLimit: Int = 64 << 10) -> Result {
            ChildProcess.collect(self, seconds: seconds, errorLimit: errorLimit)
        }
    }

    /// Runs `executable` with `arguments`; kills it (SIGKILL) after `seconds`.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], seconds: Double) throws -> Result {
        try start(executable, arguments, environment: environment).finish(seconds: seconds)
    }

    /// Starts `executable` with `arguments` and this process's environment plus `environment`.
    static func start(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws -> Running {
        // Pipes are made close-on-exec and the child spawned under one lock, so a child
        // spawned by another thread at the same moment cannot inherit these pipes.
        spawnLock.lock()
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else {
            spawnLock.unlock()
            throw LaunchError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            spawnLock.unlock()
            throw LaunchError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        let (spawned, tracking) = ScratchFiles.trackingChild {
            let spawned = posix_spawn(&pid, executable, &actions, nil, argv, envp)
            return (spawned, spawned == 0 ? pid : 0)
        }
        close(outPipe[1]); close(errPipe[1])
        spawnLock.unlock()
        guard spawned == 0 else {
            ScratchFiles.untrack(tracking)
            close(outPipe[0]); close(errPipe[0])
            throw LaunchError(description: String(cString: strerror(spawned)))
        }
        return Running(pid: pid, output: outPipe[0], errors: errPipe[0], tracking: tracking)
    }

    private static func collect(_ child: Running, seconds: Double, errorLimit: Int) -> Result {
        let pid = child.pid, outPipe = child.output, errPipe = child.errors
        var output = Data(), errors = Data()
        var open: [Int32] = [outPipe, errPipe]
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9)
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while !open.isEmpty {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { timedOut = true; break }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(1000, (deadline - now) / 1_000_000 + 1)))
            if ready < 0 && errno == EINTR { continue }
            guard ready >= 0 else { break }
            for entry in fds where entry.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if entry.fd == outPipe {
                        output.append(buffer, count: count)
                    } else if errors.count < errorLimit {
                        errors.append(buffer, count: min(count, errorLimit - errors.count))
                    }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        close(outPipe); close(errPipe)
        if timedOut { kill(pid, SIGKILL) }
        // Waited for without reaping, then reaped and untracked at once: an interruption never
        // signals a process id that was reaped and could name another process.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        var status: Int32 = 0
        ScratchFiles.settle(child.tracking) {
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if timedOut { return Result(ending: .timedOut, output: output, errors: errors) }
        let signal = status & 0x7f
        return Result(ending: signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal), output: output, errors: errors)
    }
}
