import Foundation
import TestSupport
import XCTest

/// Kills `bnconv` while it writes over an existing file, many times at
/// random moments: the existing file is always intact (old or complete new).
final class CrashSafetyTests: XCTestCase {
    func testKilledWritesNeverLeaveAPartialFile() throws {
        let folder = try temporaryFolder()
        let target = folder.appendingPathComponent("existing.h5").path
        let scratch = try temporaryFolder()
        let source = TestPaths.fixture("nested_shared_keras2.h5")
        XCTAssertEqual(try runTool("bnconv", ["convert", source, target]).status, 0)
        let good = try Data(contentsOf: URL(fileURLWithPath: target))
        let bin = folder.appendingPathComponent("existing.bin").path
        XCTAssertEqual(try runTool("bnconv", ["convert", source, bin]).status, 0)
        let goodBin = try Data(contentsOf: URL(fileURLWithPath: bin))
        var random = SeededGenerator(seed: 17)
        var killed = 0
        for attempt in 0..<40 {
            let (output, expected, arguments) = attempt % 2 == 0
                ? (target, good, ["convert", source, target])
                : (bin, goodBin, ["fold", source, "-o", bin])
            let process = Process()
            process.executableURL = TestPaths.productsFolder.appendingPathComponent("bnconv")
            process.arguments = arguments
            // SIGKILL cannot be caught: the scratch folder of a killed run's HDF5 reader stays,
            // in this test's folder rather than the system's.
            process.environment = ProcessInfo.processInfo.environment.merging(["TMPDIR": scratch.path]) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32.random(in: 0...60_000, using: &random))
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                killed += 1
            }
            process.waitUntilExit()
            // Either the old bytes or a complete new file that opens and reads whole.
            let now = try Data(contentsOf: URL(fileURLWithPath: output))
            let complete = try runTool("bnconv", ["inspect", output]).status == 0
            XCTAssertTrue(now == expected || complete, "attempt \(attempt): \(output) is the old file or a complete new one")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
            XCTAssertEqual(Set(leftovers), ["existing.h5", "existing.bin"])
        }
        print("killed \(killed) of 40 writes midway")
        XCTAssertGreaterThan(killed, 5, "enough runs were killed while writing")
    }
}
