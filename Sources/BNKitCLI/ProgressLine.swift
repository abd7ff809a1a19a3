import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A progress bar on stderr for long runs: drawn only when stderr is a
/// terminal and the run has lasted longer than `delay`, redrawn at most ten
/// times a second, and erased when the run ends (so piped or short runs
/// print nothing extra).
public final class ProgressLine {
    private let total: Int
    private let unit: String
    private let enabled: Bool
    private let delay: Double
    private let now: () -> Double
    private let write: (String) -> Void
    private let start: Double
    private var lastDraw = -Double.infinity
    private var drawn = false

    /// - Parameters:
    ///   - enabled: defaults to whether stderr is a terminal.
    ///   - now, write: the clock (seconds) and the output, replaceable in tests.
    public init(total: Int, unit: String, enabled: Bool = isatty(STDERR_FILENO) == 1, delay: Double = 0.5,
                now: @escaping () -> Double = { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 },
                write: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.total = total
        self.unit = unit
        self.enabled = enabled
        self.delay = delay
        self.now = now
        self.write = write
        self.start = now()
    }

    /// `done` of `total` finished.
    public func update(_ done: Int) {
        guard enabled else { return }
        let t = now()
        guard t - start >= delay, t - lastDraw >= 0.1 || done >= total else { return }
        lastDraw = t
        drawn = true
        write("\r" + Self.render(done: done, total: total, unit: unit, elapsed: t - start))
    }

    /// Erases the bar (if it was drawn).
    public func finish() {
        guard drawn else { return }
        write("\r\u{1B}[2K")
        drawn = false
    }

    /// `[#########...........]  45%  27,000/60,000 images  1.2 s`
    public static func render(done: Int, total: Int, unit: String, elapsed: Double, width: Int = 30) -> String {
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let filled = Int((fraction * Double(width)).rounded(.down))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let percent = String(format: "%3d%%", Int((fraction * 100).rounded(.down)))
        return "[\(bar)] \(percent)  \(grouped(done))/\(grouped(total)) \(unit)  " + String(format: "%.1f s", elapsed)
    }

    private static func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return out
    }
}
