import Foundation
import BNKitCLI
import IDX
import TestSupport
import XCTest

/// bnrun on NumPy arrays and image files, and the streamed report formats.
final class InputFormatsTests: XCTestCase {
    private func csvRows(_ text: String) -> [[String]] {
        text.split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    /// `.npy` (uint8 and float32) and `.npz` holding the first MNIST test images give the
    /// same outputs as the IDX file, bit for bit.
    func testNumPyAndIDXGiveIdenticalOutputs() throws {
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("seed.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("seed_mlp_keras3.h5"), "-o", bin]).status, 0)
        let images = try IDXReader.read(path: TestPaths.testImages)
        let idx = folder.appendingPathComponent("first1000.idx").path
        try writeIDXBytes(images.floats(0..<(1000 * 784)).map { UInt8($0) }, dimensions: [1000, 28, 28], to: idx)
        let reference = try runTool("bnrun", [bin, idx, "--format", "csv"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        for (input, extra) in [("npy/mnist1000_uint8.npy", [String]()), ("npy/mnist1000.npz", ["--array", "x_test"])] {
            let run = try runTool("bnrun", [bin, TestPaths.fixture(input), "--format", "csv"] + extra)
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(run.stdout, reference.stdout, input)
        }
        let float32 = try runTool("bnrun", [bin, TestPaths.fixture("npy/mnist100_float32.npy"), "--format", "csv"])
        XCTAssertEqual(float32.stdout.split(separator: "\n").prefix(101), reference.stdout.split(separator: "\n").prefix(101))
        // An .npz with two arrays and no --array: the choices are named.
        let ambiguous = try runTool("bnrun", [bin, TestPaths.fixture("npy/mnist1000.npz")])
        XCTAssertEqual(ambiguous.status, 65)
        XCTAssertTrue(ambiguous.stderr.contains("x_test") && ambiguous.stderr.contains("--array"), ambiguous.stderr)
    }

    /// Images through bnrun give Keras's predictions for Keras's preprocessing of the same
    /// files (tools/make_input_fixtures.py), rows keyed by path; damaged files stop the run
    /// with their name, or are skipped and listed with --skip-bad; --top and --class-names.
    func testImagesGiveKerasPredictions() throws {
        let folder = try temporaryFolder()
        let names = ["rgb.png", "rgba.png", "palette.png", "gray.png", "gray16.png", "bilevel.png", "photo.jpg", "gray.jpg", "exact.png"]
        let images = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        for name in names + ["damaged.jpg"] {
            try FileManager.default.copyItem(atPath: TestPaths.fixture("images/\(name)"), toPath: images.appendingPathComponent(name).path)
        }
        for producer in KerasReference.producers {
            let model = TestPaths.fixture("images/rgb_cnn_\(producer).h5")
            let expected = try NPYValues(TestPaths.fixture("images/rgb_cnn_\(producer).outputs.npy"))
            // Without --skip-bad the damaged file stops the run, named, and the existing report is untouched.
            let out = folder.appendingPathComponent("report.csv").path
            try Data("previous report\n".utf8).write(to: URL(fileURLWithPath: out))
            let stopped = try runTool("bnrun", [model, images.path, "--preprocess", "tf", "--format", "csv", "--output", out])
            XCTAssertEqual(stopped.status, 65)
            XCTAssertTrue(stopped.stderr.contains("damaged.jpg"), stopped.stderr)
            XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "previous report\n")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".tmp") }, [])
            let run = try runTool("bnrun", [model, images.path, "--preprocess", "tf", "--format", "csv", "--skip-bad", "--output", out])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertTrue(run.stderr.contains("damaged.jpg"), "skipped files are listed: \(run.stderr)")
            let rows = csvRows(try String(contentsOfFile: out, encoding: .utf8))
            XCTAssertEqual(rows.count, names.count)
            var worst: Float = 0
            for row in rows {
                let name = URL(fileURLWithPath: row[0]).lastPathComponent
                let i = try XCTUnwrap(names.firstIndex(of: name), row[0])
                let ours = row.dropFirst(2).map { Float($0)! }
                worst = max(worst, maxAbsDifference(ours, Array(expected.values[(i * 5)..<((i + 1) * 5)])))
            }
            print("\(producer): images through bnrun vs Keras (load_img + preprocess_input + predict): max abs difference \(worst)")
            XCTAssertLessThanOrEqual(worst, 1e-5)
            // --top with class names, text format.
            let top = try runTool("bnrun", [model, TestPaths.fixture("images/rgb.png"), "--preprocess", "tf", "--top", "2",
                                            "--class-names", TestPaths.fixture("images/classes.txt")])
            XCTAssertEqual(top.status, 0, top.stderr)
            let line = try XCTUnwrap(top.stdout.split(separator: "\n").first)
            XCTAssertTrue(line.hasPrefix(TestPaths.fixture("images/rgb.png") + "\t"), String(line))
            XCTAssertTrue(["cat", "dog", "bird", "fish", "horse"].contains { line.contains("\t\($0) ") }, String(line))
        }
        // The preprocessing recorded at fold time is used when no flag is given.
        let bin = folder.appendingPathComponent("rgb.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("images/rgb_cnn_keras3.h5"), "-o", bin, "--preprocess", "tf"]).status, 0)
        let recorded = try runTool("bnrun", [bin, TestPaths.fixture("images/photo.jpg"), "--format", "csv"])
        let flagged = try runTool("bnrun", [TestPaths.fixture("images/rgb_cnn_keras3.h5"), TestPaths.fixture("images/photo.jpg"),
                                            "--format", "csv", "--preprocess", "tf"])
        let a = csvRows(recorded.stdout)[0].dropFirst(2).map { Float($0)! }, b = csvRows(flagged.stdout)[0].dropFirst(2).map { Float($0)! }
        XCTAssertLessThanOrEqual(maxAbsDifference(a, b), 1e-5)
        let plain = try runTool("bnrun", [TestPaths.fixture("images/rgb_cnn_keras3.h5"), TestPaths.fixture("images/photo.jpg"), "--format", "csv"])
        XCTAssertGreaterThan(maxAbsDifference(csvRows(plain.stdout)[0].dropFirst(2).map { Float($0)! }, b), 1e-4, "preprocessing changes the answer")
    }

    /// Images are decoded and resized by as many threads as `--threads`: the report is the one
    /// thread's, byte for byte, in the listed order, with the same files skipped, for batches
    /// that a skipped file leaves short and must refill; without --skip-bad the first damaged
    /// file in order stops the run, whichever thread met it first.
    func testImagesOnSeveralThreadsGiveTheOneThreadReport() throws {
        let folder = try temporaryFolder()
        let images = folder.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        let names = ["rgb.png", "rgba.png", "palette.png", "gray.png", "gray16.png", "bilevel.png", "photo.jpg", "gray.jpg", "exact.png",
                     "hostile/progressive.jpg"]
        let photo = [UInt8](try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("images/photo.jpg"))))
        for copy in 0..<3 {
            for (i, name) in names.enumerated() {
                try FileManager.default.copyItem(atPath: TestPaths.fixture("images/\(name)"),
                                                 toPath: images.appendingPathComponent("\(copy)-\(i)-\(URL(fileURLWithPath: name).lastPathComponent)").path)
            }
            try Data(photo.prefix(photo.count / 2)).write(to: images.appendingPathComponent("\(copy)-5-cut.jpg"))
        }
        let model = TestPaths.fixture("images/rgb_cnn_keras2.h5")
        for resize in ["nearest", "bilinear"] {
            var reports: [String] = []
            for threads in ["1", "2", "5"] {
                let run = try runTool("bnrun", [model, images.path, "--preprocess", "tf", "--resize", resize, "--format", "csv", "--skip-bad",
                                                "--batch", "4", "--threads", threads])
                XCTAssertEqual(run.status, 0, run.stderr)
                let keys = csvRows(run.stdout).map { $0[0] }
                XCTAssertEqual(keys.count, 3 * names.count, run.stdout)
                XCTAssertEqual(keys, keys.sorted(), "rows in the folder's (sorted) order")
                XCTAssertEqual(run.stderr.components(separatedBy: "cut.jpg").count - 1, 3, run.stderr)
                reports.append(run.stdout + run.stderr)
                let stopped = try runTool("bnrun", [model, images.path, "--preprocess", "tf", "--batch", "4", "--threads", threads])
                XCTAssertEqual(stopped.status, 65)
                XCTAssertTrue(stopped.stderr.contains("0-5-cut.jpg: cannot read the image: the file ends before the image does"), stopped.stderr)
            }
            XCTAssertEqual(Set(reports).count, 1, "\(resize): reports differ between thread counts")
        }
    }

    /// Without --batch a tile holds 1024 samples, or 64 MiB of float inputs when that is fewer;
    /// with batch statistics the tile is the batch and stays 1024.
    func testDefaultTileHoldsAtMost64MiBOfInputs() {
        var options = RunOptions()
        XCTAssertEqual(options.defaultTileSize(inputSize: 28 * 28), 1024)
        XCTAssertEqual(options.defaultTileSize(inputSize: 224 * 224 * 3), 111)
        XCTAssertEqual(options.defaultTileSize(inputSize: 4096 * 4096 * 3), 1)
        options.batchNormStatistics = .batch
        XCTAssertEqual(options.defaultTileSize(inputSize: 224 * 224 * 3), 1024)
    }

    /// `--scale` rescales 0…255 image values (models trained on `img_to_array(img) / 255`);
    /// it cannot be combined with a preprocessing mode.
    func testImageScale() throws {
        let model = TestPaths.fixture("small_cnn_keras3.h5"), image = TestPaths.fixture("images/gray.png")
        let scaled = try runTool("bnrun", [model, image, "--scale", "1/255", "--format", "csv"])
        XCTAssertEqual(scaled.status, 0, scaled.stderr)
        let refused = try runTool("bnrun", [model, image, "--scale", "1/255", "--preprocess", "tf"])
        XCTAssertEqual(refused.status, 65)
        XCTAssertTrue(refused.stderr.contains("--scale") && refused.stderr.contains(image), refused.stderr)
        let unscaled = try runTool("bnrun", [model, image, "--format", "csv"])
        XCTAssertNotEqual(csvRows(unscaled.stdout)[0].dropFirst(2), csvRows(scaled.stdout)[0].dropFirst(2))
    }

    /// Peak memory does not grow with the number of inputs, for every output format:
    /// 600,000 images (the training set ten times, plain IDX) against 10,000.
    func testPeakMemoryIsFlatForEveryFormat() throws {
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("seed.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("seed_mlp_keras3.h5"), "-o", bin]).status, 0)
        let train = try IDXReader.read(path: TestPaths.fixture("mnist/train-images.idx3-ubyte.gz"))
        let bytes = train.floats(0..<train.count).map { UInt8($0) }
        let large = folder.appendingPathComponent("600k.idx").path
        var data = Data([0, 0, 0x08, 3])
        for d in [600_000, 28, 28] { withUnsafeBytes(of: UInt32(d).bigEndian) { data.append(contentsOf: $0) } }
        XCTAssertTrue(FileManager.default.createFile(atPath: large, contents: data), large)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: large))
        try handle.seekToEnd()
        let chunk = Data(bytes)
        for _ in 0..<10 { try handle.write(contentsOf: chunk) }
        try handle.close()
        let small = folder.appendingPathComponent("10k.idx").path
        try writeIDXBytes(Array(bytes.prefix(10_000 * 784)), dimensions: [10_000, 28, 28], to: small)
        for format in ["text", "csv", "json", "npy", "summary"] {
            var peaks: [Int] = []
            for input in [small, large] {
                let out = folder.appendingPathComponent("out.\(format)").path
                let (status, peak) = try runToolMeasuringPeakMemory("bnrun", [bin, input, "--format", format, "--output", out])
                XCTAssertEqual(status, 0, format)
                peaks.append(peak)
                try? FileManager.default.removeItem(atPath: out)
            }
            print("bnrun --format \(format) peak memory: 10,000 images \(peaks[0] >> 20) MiB, 600,000 images \(peaks[1] >> 20) MiB")
            XCTAssertLessThan(peaks[1], peaks[0] + (6 << 20), format)
        }
    }
}

/// The values of a small float32 .npy file (test helper; the reader under test is not used).
struct NPYValues {
    let values: [Float]
    init(_ path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let body = data.dropFirst(10 + headerLength)
        let bytes = [UInt8](body)
        var out: [Float] = []
        for i in stride(from: 0, to: bytes.count, by: 4) {
            var bits = UInt32(bytes[i])
            bits |= UInt32(bytes[i + 1]) << 8
            bits |= UInt32(bytes[i + 2]) << 16
            bits |= UInt32(bytes[i + 3]) << 24
            out.append(Float(bitPattern: bits))
        }
        values = out
    }
}
