import Foundation
import HDF5
import TestSupport
import XCTest

/// Bad input through the binaries: one clear line on stderr naming the file
/// and the problem, exit status 65, and no output file (nor temporary file) left.
final class BadInputTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws {
        folder = try temporaryFolder()
    }

    private func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    private func copyFixture(_ producer: String = "keras2") throws -> String {
        let copy = path("model.h5")
        try FileManager.default.copyItem(atPath: try KerasReference(producer: producer).modelPath, toPath: copy)
        return copy
    }

    /// Runs the tool and checks the failure contract.
    private func assertFails(_ tool: String, _ arguments: [String], naming file: String, mentioning words: [String],
                             outputs: [String], status: Int32 = 65, line: UInt = #line) throws {
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
        let run = try runTool(tool, arguments)
        XCTAssertEqual(run.status, status, "exit status; stderr: \(run.stderr)", line: line)
        let lines = run.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line: \(run.stderr)", line: line)
        XCTAssertTrue(run.stderr.hasPrefix("\(tool): error: "), run.stderr, line: line)
        XCTAssertTrue(run.stderr.contains(file), "names \(file): \(run.stderr)", line: line)
        for word in words { XCTAssertTrue(run.stderr.contains(word), "mentions '\(word)': \(run.stderr)", line: line) }
        for output in outputs { XCTAssertFalse(FileManager.default.fileExists(atPath: output), "\(output) left behind", line: line) }
        let after = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
        XCTAssertEqual(after, before, "no new (temporary) files", line: line)
    }

    private func foldAndRunFail(_ model: String, mentioning words: [String], line: UInt = #line) throws {
        let bin = path("out.bin"), csv = path("out.csv")
        try assertFails("bnconv", ["fold", model, "-o", bin], naming: model, mentioning: words, outputs: [bin], line: line)
        try assertFails("bnrun", [model, TestPaths.testImages, "--output", csv, "--format", "csv"], naming: model,
                        mentioning: words, outputs: [csv], line: line)
    }

    func testTruncatedH5() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: try KerasReference(producer: "keras3").modelPath))
        for length in [4096, data.count / 2] {
            let truncated = path("truncated-\(length).h5")
            try data.prefix(length).write(to: URL(fileURLWithPath: truncated))
            try foldAndRunFail(truncated, mentioning: [])
        }
    }

    func testH5WithoutModelConfig() throws {
        let model = try copyFixture()
        try HDF5File.open(model, writable: true).root().deleteAttribute("model_config")
        try foldAndRunFail(model, mentioning: ["model_config"])
    }

    func testBatchNormWeightOfWrongShape() throws {
        let model = try copyFixture("keras3")
        do {
            let group = try HDF5File.open(model, writable: true).root().group("model_weights/batch_normalization_1")
            let name = try group.stringArrayAttribute("weight_names")[3]
            try group.deleteLink(name)
            try group.createFloatDataset(name, shape: [50, 1], values: [Float](repeating: 1, count: 50))
        }
        try foldAndRunFail(model, mentioning: ["batch_normalization_1", "moving_variance", "[50, 1]"])
    }

    func testEmptyFile() throws {
        let empty = path("empty.h5")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        try foldAndRunFail(empty, mentioning: ["empty"])
        let bin = path("model.bin")
        XCTAssertEqual(try runTool("bnconv", ["fold", try KerasReference(producer: "keras2").modelPath, "-o", bin]).status, 0)
        let emptyImages = path("empty.idx")
        XCTAssertTrue(FileManager.default.createFile(atPath: emptyImages, contents: Data()))
        try assertFails("bnrun", [bin, emptyImages, "--output", path("o.txt")], naming: emptyImages, mentioning: ["too short"], outputs: [path("o.txt")])
    }

    func testIDXHeaderThatClaimsMoreThanTheFileHolds() throws {
        let bin = path("model.bin")
        XCTAssertEqual(try runTool("bnconv", ["fold", try KerasReference(producer: "keras2").modelPath, "-o", bin]).status, 0)
        var bytes: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]
        bytes += [UInt8](repeating: 0, count: 4 * 784)
        let lying = path("lying.idx")
        try Data(bytes).write(to: URL(fileURLWithPath: lying))
        try assertFails("bnrun", [bin, lying, "--output", path("o.csv")], naming: lying, mentioning: ["3920", "3136"], outputs: [path("o.csv")])
        // The same lie in the labels file.
        var labels: [UInt8] = [0, 0, 8, 1, 0, 0, 0x27, 0x11]
        labels += [UInt8](repeating: 1, count: 10_000)
        let lyingLabels = path("labels.idx")
        try Data(labels).write(to: URL(fileURLWithPath: lyingLabels))
        try assertFails("bnrun", [bin, TestPaths.testImages, "--labels", lyingLabels, "--output", path("o.csv")],
                        naming: lyingLabels, mentioning: ["10001"], outputs: [path("o.csv")])
    }

    func testUnknownIDXTypeCode() throws {
        let bin = path("model.bin")
        XCTAssertEqual(try runTool("bnconv", ["fold", try KerasReference(producer: "keras2").modelPath, "-o", bin]).status, 0)
        let unknown = path("unknown.idx")
        try Data([0, 0, 0x0A, 1, 0, 0, 0, 1, 0]).write(to: URL(fileURLWithPath: unknown))
        try assertFails("bnrun", [bin, unknown, "--output", path("o.csv")], naming: unknown, mentioning: ["type code 0xA"], outputs: [path("o.csv")])
    }

    func testCorruptedBin() throws {
        let bin = path("model.bin")
        XCTAssertEqual(try runTool("bnconv", ["fold", try KerasReference(producer: "keras3").modelPath, "-o", bin]).status, 0)
        var data = try Data(contentsOf: URL(fileURLWithPath: bin))
        for (position, section) in [(1000, "data"), (100, "header"), (20, "preamble")] {
            var corrupted = data
            corrupted[data.count - position] ^= 0x10
            if section != "data" { corrupted = data; corrupted[position] ^= 0x10 }
            let bad = path("corrupted-\(section).bin")
            try corrupted.write(to: URL(fileURLWithPath: bad))
            try assertFails("bnrun", [bad, TestPaths.testImages, "--output", path("o.csv")], naming: bad,
                            mentioning: ["corrupted", section], outputs: [path("o.csv")])
            try assertFails("bnconv", ["fold", bad, "-o", path("again.bin")], naming: bad, mentioning: ["checksum"], outputs: [path("again.bin")])
        }
        data.removeLast(10)
        try data.write(to: URL(fileURLWithPath: path("short.bin")))
        try assertFails("bnrun", [path("short.bin"), TestPaths.testImages], naming: path("short.bin"), mentioning: ["truncated"], outputs: [])
    }

    func testImagesOfTheWrongSize() throws {
        let bin = path("model.bin")
        XCTAssertEqual(try runTool("bnconv", ["fold", try KerasReference(producer: "keras2").modelPath, "-o", bin]).status, 0)
        let small = path("small.idx")
        try Data([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4]).write(to: URL(fileURLWithPath: small))
        try assertFails("bnrun", [bin, small], naming: small, mentioning: ["4 values", "784"], outputs: [])
    }

    func testFailedFoldLeavesAnExistingOutputUntouched() throws {
        let existing = path("existing.bin")
        try Data("previous contents".utf8).write(to: URL(fileURLWithPath: existing))
        let model = try copyFixture()
        try HDF5File.open(model, writable: true).root().deleteAttribute("model_config")
        let run = try runTool("bnconv", ["fold", model, "-o", existing])
        XCTAssertEqual(run.status, 65)
        XCTAssertEqual(try String(contentsOfFile: existing, encoding: .utf8), "previous contents")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted(), ["existing.bin", "model.h5"])
    }

    func testMissingFileAndUsageErrors() throws {
        try assertFails("bnrun", [path("nope.bin"), TestPaths.testImages], naming: path("nope.bin"), mentioning: ["no such file"], outputs: [])
        let usage = try runTool("bnrun", ["only-one-argument"])
        XCTAssertEqual(usage.status, 64, usage.stderr)
        let format = try runTool("bnrun", ["a", "b", "--format", "xml"])
        XCTAssertEqual(format.status, 64, format.stderr)
    }
}
