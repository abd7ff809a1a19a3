import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a built tool (stdout and stderr discarded) and returns its exit status and its
/// peak resident set in bytes: the largest VmHWM read from /proc/PID/status while it
/// runs (polled every 2 ms; the high-water mark only grows, and a run's peak is during
/// its work, not in its last milliseconds). wait4's ru_maxrss is no use here: a child of
/// a large test process starts with the parent's high-water mark.
public func runToolMeasuringPeakMemory(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws
    -> (status: Int32, peakBytes: Int) {
    let path = TestPaths.productsFolder.appendingPathComponent(name).path
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let envp = ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { envp.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
    guard spawned == 0 else { throw NSError(domain: "posix_spawn", code: Int(spawned)) }
    var status: Int32 = 0
    var peak = 0
    while true {
        if let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
           let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") {
            peak = max(peak, kilobytes * 1024)
        }
        let done = waitpid(pid, &status, WNOHANG)
        if done == pid { break }
        guard done == 0 else { throw NSError(domain: "waitpid", code: Int(errno)) }
        usleep(2000)
    }
    let exited = (status & 0x7f) == 0
    return (exited ? (status >> 8) & 0xff : -1, peak)
}

/// Writes a plain IDX file of unsigned bytes with the given dimensions.
public func writeIDXBytes(_ bytes: [UInt8], dimensions: [Int], to path: String) throws {
    var data = Data([0, 0, 0x08, UInt8(dimensions.count)])
    for d in dimensions { withUnsafeBytes(of: UInt32(d).bigEndian) { data.append(contentsOf: $0) } }
    data.append(contentsOf: bytes)
    try data.write(to: URL(fileURLWithPath: path))
}
