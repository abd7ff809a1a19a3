import Foundation
import TestSupport
import XCTest

/// Integrity and hostile input through the binaries.
final class HostileInputTests: XCTestCase {
    /// Every single-byte change of a real folded fixture `.bin` is detected
    /// (refused with a message naming the file), and 5,000 random ones of a
    /// larger file: no flip is harmless, since padding and reserved bytes
    /// must be zero and every section is checksummed.
    func testEveryByteFlipOfAFixtureBinIsDetected() throws {
        let folder = try temporaryFolder()
        var random = SeededGenerator(seed: 23)
        for (model, positions) in [("small_cnn_keras2", Int.max), ("seed_mlp_keras3", 5_000)] {
            let bin = folder.appendingPathComponent("\(model).bin").path
            XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("\(model).h5"), "-o", bin]).status, 0)
            let data = try Data(contentsOf: URL(fileURLWithPath: bin))
            let chosen = positions >= data.count ? Array(0..<data.count) : (0..<positions).map { _ in Int.random(in: 0..<data.count, using: &random) }
            // Decoding in-process is what bnrun does first; a sample also goes through the binary below.
            var undetected: [Int] = []
            for position in chosen {
                var corrupted = data
                corrupted[position] ^= UInt8.random(in: 1...255, using: &random)
                if (try? NativeFormatProbe.decode(corrupted)) != nil { undetected.append(position) }
            }
            XCTAssertEqual(undetected, [], "\(model): flips that decoded")
            print("\(model): \(chosen.count) single-byte flips of a \(data.count)-byte .bin, all detected")
            for position in chosen.prefix(20) {
                var corrupted = data
                corrupted[position] ^= 0x01
                let bad = folder.appendingPathComponent("flip.bin").path
                try corrupted.write(to: URL(fileURLWithPath: bad))
                let run = try runTool("bnrun", [bad, TestPaths.testImages])
                XCTAssertEqual(run.status, 65, "flip at \(position): \(run.stderr)")
                XCTAssertTrue(run.stderr.contains(bad), run.stderr)
            }
        }
    }

    /// The inputs the fuzzers found, replayed by the plain builds of the fuzz targets; and the
    /// seeds they start from (the fixtures' images, NumPy arrays and ONNX files, and fuzz-native's
    /// small model of every op kind), so that each target's checks run in every test run (the
    /// sanitized fuzzing itself is `tools/fuzz.sh`, or the test command with BNKIT_FUZZ_SECONDS).
    func testFuzzRegressionInputsAndSeedsReplayCleanly() throws {
        func files(_ folder: String, _ keep: (String) -> Bool = { _ in true }) throws -> [String] {
            let url = TestPaths.root.appendingPathComponent(folder)
            return try FileManager.default.contentsOfDirectory(atPath: url.path).filter(keep).sorted().map { url.appendingPathComponent($0).path }
        }
        var replays: [(target: String, files: [String])] = []
        for target in ["fuzz-native", "fuzz-idx", "fuzz-keras-config", "fuzz-npy"] {
            replays.append((target, try files("Fixtures/fuzz-regressions/\(target)")))
        }
        let seeds = try temporaryFolder().appendingPathComponent("native")
        XCTAssertEqual(try runTool("fuzz-native", ["--write-seeds", seeds.path]).status, 0)
        let nativeSeeds = try FileManager.default.contentsOfDirectory(atPath: seeds.path).map { seeds.appendingPathComponent($0).path }
        replays.append(("fuzz-native", nativeSeeds))
        replays.append(("fuzz-npy", try files("Fixtures/npy") { $0.hasPrefix("le_") || $0.hasPrefix("be_") || $0.hasPrefix("na_") || $0 == "expected.npz" }))
        replays.append(("fuzz-image", try files("Fixtures/images") { [".png", ".jpg"].contains(where: $0.hasSuffix) }
                                      + files("Fixtures/images/hostile") { $0.hasSuffix(".jpg") }))
        replays.append(("fuzz-onnx", try files("Fixtures/onnx") { $0.hasSuffix(".onnx") }))
        replays.append(("fuzz-idx", [TestPaths.fixture("mnist/t10k-labels.idx1-ubyte.gz")]))
        for (target, inputs) in replays {
            XCTAssertFalse(inputs.isEmpty, target)
            let run = try runTool(target, inputs)
            XCTAssertEqual(run.status, 0, "\(target): \(run.stderr)")
        }
    }

    /// Messages quote what files hold and their names; a crafted file cannot break the error
    /// over lines or send terminal escapes: a .npy header with a newline and an ANSI escape in it,
    /// and (with --skip-bad) an image whose name holds a newline, each reported on one line.
    func testMessagesQuotingAFileStayOnOneLine() throws {
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("seed.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("seed_mlp_keras2.h5"), "-o", bin]).status, 0)
        var text = "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 784), }\nforged: line\u{1B}[2J"
        text += String(repeating: " ", count: (64 - (10 + text.utf8.count + 1) % 64) % 64) + "\n"
        let header = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(text.utf8.count % 256), UInt8(text.utf8.count / 256)]) + Data(text.utf8)
        let npy = folder.appendingPathComponent("crafted.npy").path
        try (header + Data(count: 784)).write(to: URL(fileURLWithPath: npy))
        let run = try runTool("bnrun", [bin, npy])
        XCTAssertEqual(run.status, 65, run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n", omittingEmptySubsequences: false).count, 2, run.stderr)
        XCTAssertTrue(run.stderr.contains(npy) && run.stderr.contains("\\nforged: line\\u{1b}[2J"), run.stderr)

        let images = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: false)
        try Data("not an image".utf8).write(to: images.appendingPathComponent("bad\nname.png"))
        try FileManager.default.copyItem(atPath: TestPaths.fixture("images/gray.png"), toPath: images.appendingPathComponent("good.png").path)
        let skipped = try runTool("bnrun", [TestPaths.fixture("images/rgb_cnn_keras2.h5"), images.path, "--skip-bad", "--format", "csv"])
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        let lines = skipped.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, skipped.stderr)
        XCTAssertTrue(lines.last!.contains("bad\\nname.png: cannot read the image: not a PNG or JPEG"), skipped.stderr)
    }

    func testTruncatedH5AtManyOffsets() throws {
        let source = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("resnet_keras2.h5")))
        let folder = try temporaryFolder()
        let bad = folder.appendingPathComponent("truncated.h5").path
        for step in 1..<24 {
            try source.prefix(source.count * step / 24).write(to: URL(fileURLWithPath: bad))
            let out = folder.appendingPathComponent("out.bin").path
            let run = try runTool("bnconv", ["fold", bad, "-o", out])
            XCTAssertEqual(run.status, 65, "cut at \(step)/24: \(run.stderr)")
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            XCTAssertTrue(run.stderr.contains(bad), run.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        }
    }
}

import NativeFormat

/// The in-process decoder bnrun uses.
enum NativeFormatProbe {
    static func decode(_ data: Data) throws -> NativeModel { try NativeFormat.decode(data, path: "probe.bin") }
}
