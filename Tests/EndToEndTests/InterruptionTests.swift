import Foundation
import TestSupport
import XCTest

/// Interrupts `bnconv` and `bnrun` (SIGINT, SIGTERM, SIGHUP) at random moments of their work:
/// each ends by that signal (or finished first), its output is the old file or the complete new
/// one, and nothing is left behind, neither a hidden temporary next to the output nor a scratch
/// folder in TMPDIR (the HDF5 reader's, an extracted .npz member), nor the HDF5 reader process.
final class InterruptionTests: XCTestCase {
    struct Job {
        let tool: String
        let arguments: [String]
        let output: String
    }

    func testInterruptedToolsLeaveNothingBehind() throws {
        let folder = try temporaryFolder()
        let scratch = folder.appendingPathComponent("tmp")
        let outputs = folder.appendingPathComponent("out")
        for url in [scratch, outputs] { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: false) }
        let environment = ["TMPDIR": scratch.path]
        let keras = TestPaths.fixture("big_cnn_keras3.h5")
        let seed = TestPaths.fixture("seed_mlp_keras3.h5")
        let jobs = [
            Job(tool: "bnconv", arguments: ["fold", keras, "-o", outputs.appendingPathComponent("model.bin").path],
                output: outputs.appendingPathComponent("model.bin").path),
            Job(tool: "bnconv", arguments: ["convert", keras, outputs.appendingPathComponent("model.h5").path],
                output: outputs.appendingPathComponent("model.h5").path),
            Job(tool: "bnrun", arguments: [seed, TestPaths.fixture("npy/mnist1000.npz"), "--array", "x_test", "--format", "npy",
                                           "--output", outputs.appendingPathComponent("outputs.npy").path],
                output: outputs.appendingPathComponent("outputs.npy").path),
        ]
        // Every output exists beforehand (an interrupted write must keep it), and each job's
        // uninterrupted time sets the range of the moments it is interrupted at.
        var durations: [Double] = []
        var before: [Data] = []
        for job in jobs {
            let start = Date()
            let run = try runTool(job.tool, job.arguments, environment: environment)
            XCTAssertEqual(run.status, 0, "\(job.tool) \(job.arguments): \(run.stderr)")
            durations.append(Date().timeIntervalSince(start))
            before.append(try Data(contentsOf: URL(fileURLWithPath: job.output)))
        }
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: outputs.path))
        XCTAssertEqual(names, ["model.bin", "model.h5", "outputs.npy"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), [], "uninterrupted runs clean up")

        var random = SeededGenerator(seed: 5)
        var interrupted = 0
        for attempt in 0..<36 {
            let index = attempt % jobs.count
            let job = jobs[index]
            let signal = [SIGINT, SIGTERM, SIGHUP][(attempt / jobs.count) % 3]
            let process = Process()
            process.executableURL = TestPaths.productsFolder.appendingPathComponent(job.tool)
            process.arguments = job.arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32(Double.random(in: 0...1.1, using: &random) * durations[index] * 1e6))
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            let what = "attempt \(attempt): \(job.tool) \(job.arguments.first ?? ""), signal \(signal)"
            XCTAssertEqual(processes(mentioning: scratch.path), [], "\(what): no HDF5 reader left running")
            if process.terminationReason == .uncaughtSignal {
                XCTAssertEqual(process.terminationStatus, signal, "\(what): ends by the signal it got")
                interrupted += 1
            } else {
                XCTAssertEqual(process.terminationStatus, 0, "\(what): finished before the signal")
            }
            // The old file or a complete new one (libhdf5 stamps times, so a new .h5 differs).
            let now = try Data(contentsOf: URL(fileURLWithPath: job.output))
            let complete = try now == before[index]
                || (job.tool == "bnconv" && runTool("bnconv", ["inspect", job.output]).status == 0)
            XCTAssertTrue(complete, "\(what): \(job.output) is the old file or a complete new one")
            XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: outputs.path)), names,
                           "\(what): no temporary left next to the output")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path), [], "\(what): no scratch left in TMPDIR")
        }
        print("interrupted \(interrupted) of 36 runs midway")
        XCTAssertGreaterThan(interrupted, 12, "enough runs were interrupted while working")
    }

    /// Processes whose command line mentions `text` (the HDF5 reader's names its output folder).
    private func processes(mentioning text: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { Int($0) != nil }.filter { pid in
            // Read to the end: /proc's files have no size for FileManager.contents to go by.
            guard let file = FileHandle(forReadingAtPath: "/proc/\(pid)/cmdline"),
                  let data = try? file.readToEnd() else { return false }
            try? file.close()
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
        }
    }
}
