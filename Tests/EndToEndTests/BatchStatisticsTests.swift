import BNKit
import Foundation
import IDX
import TestSupport
import XCTest

/// `bnconv recalibrate` and `bnrun --bn-statistics batch` through the built binaries,
/// against references made by real Keras (tools/bn_statistics_reference.py, committed
/// in Fixtures/bn_statistics/): float64 statistics layer by layer, and Keras's own
/// `model(x, training=True)`.
final class BatchStatisticsTests: XCTestCase {
    private let models = ["seed_mlp", "small_cnn", "resnet"]

    private func reference(_ base: String) throws -> (limit: Int, layers: [String: (mean: [Double], variance: [Double])]) {
        let url = URL(fileURLWithPath: TestPaths.fixture("bn_statistics/\(base).recalibrated.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let layers = try XCTUnwrap(json["layers"] as? [String: [String: [Double]]])
        return (try XCTUnwrap(json["limit"] as? Int), layers.mapValues { ($0["mean"]!, $0["variance"]!) })
    }

    /// The recalibrated statistics equal Keras's float64 computation to 1e-5 relative
    /// (a mean relative to max(|mean|, std), a variance relative to itself), for an MLP
    /// whose first BN feeds the second BN's layer, a CNN (per channel over N·H·W) and a
    /// ResNet with parallel BN branches, both producers; gamma, beta and every other
    /// weight are unchanged, bit for bit.
    func testRecalibratedStatisticsEqualTheFloat64Reference() throws {
        let folder = try temporaryFolder()
        for model in models {
            for producer in KerasReference.producers {
                let base = "\(model)_\(producer)"
                let (limit, layers) = try reference(base)
                for format in ["h5", "bin"] {
                    let out = folder.appendingPathComponent("\(base).\(format)").path
                    let run = try runTool("bnconv", ["recalibrate", TestPaths.fixture("\(base).h5"), "--images", TestPaths.testImages,
                                                     "--limit", "\(limit)", "--batch", "300", "-o", out])
                    XCTAssertEqual(run.status, 0, run.stderr)
                    XCTAssertTrue(run.stdout.contains("recalibrated \(layers.count) BatchNormalization layers on \(limit) images"), run.stdout)
                    let original = try Model.load(path: TestPaths.fixture("\(base).h5"))
                    let recalibrated = try Model.load(path: out)
                    var worst = 0.0
                    for (name, expected) in layers {
                        let mean = try recalibrated.weight(.movingMean, of: name).values
                        let variance = try recalibrated.weight(.movingVariance, of: name).values
                        // Constant channels (variance 0 up to rounding) are floored at 1e-12 of the largest.
                        let floor = 1e-12 * (expected.variance.max() ?? 1)
                        for c in expected.mean.indices {
                            let spread = max(abs(expected.mean[c]), expected.variance[c].squareRoot(), floor.squareRoot())
                            let meanError = abs(Double(mean[c]) - expected.mean[c]) / spread
                            let varianceError = abs(Double(variance[c]) - expected.variance[c]) / max(expected.variance[c], floor)
                            worst = max(worst, meanError, varianceError)
                        }
                        XCTAssertNotEqual(try original.weight(.movingMean, of: name).values, mean, "\(base) \(name): statistics unchanged")
                    }
                    XCTAssertLessThanOrEqual(worst, 1e-5, "\(base).\(format)")
                    print("\(base) -> .\(format): recalibrated statistics vs Keras float64: max rel. error \(worst)")
                    for node in original.graph.nodes {
                        for (role, tensor) in node.operation.weights where role != .movingMean && role != .movingVariance {
                            XCTAssertTrue(try recalibrated.weight(role, of: node.name).isBitIdentical(to: tensor), "\(base) \(node.name) \(role)")
                        }
                    }
                }
            }
        }
    }

    /// The first `count` MNIST test images as a plain uint8 IDX file.
    private func firstTestImages(_ count: Int, in folder: URL) throws -> String {
        let images = try IDXReader.read(path: TestPaths.testImages)
        let path = folder.appendingPathComponent("first\(count).idx").path
        let values = images.floats(0..<(count * 784)).map { UInt8($0) }
        try writeIDXBytes(values, dimensions: [count, 28, 28], to: path)
        return path
    }

    private func csvOutputs(_ text: String) -> [Float] {
        text.split(separator: "\n").dropFirst().flatMap { $0.split(separator: ",").dropFirst(2).map { Float($0)! } }
    }

    /// `--bn-statistics batch` equals Keras's `model(x, training=True)` batch by batch:
    /// within 1e-5 of the same model cloned in float64 by Keras, and of the float32 model
    /// within 1e-5 plus the float32 model's own distance from the float64 one (Keras
    /// reduces conv batch moments in float32; MLPs meet 1e-5 against it directly).
    func testBatchStatisticsEqualKerasTrainingMode() throws {
        let folder = try temporaryFolder()
        let images = try firstTestImages(512, in: folder)
        for model in models {
            for producer in KerasReference.producers {
                let base = "\(model)_\(producer)"
                let keras64 = try IDXReader.read(path: TestPaths.fixture("bn_statistics/\(base).training_float64_b128.idx"))
                let keras32 = try IDXReader.read(path: TestPaths.fixture("bn_statistics/\(base).training_float32_b128.idx"))
                let exact = keras64.floats(0..<keras64.count), float32 = keras32.floats(0..<keras32.count)
                let run = try runTool("bnrun", [TestPaths.fixture("\(base).h5"), images, "--bn-statistics", "batch", "--batch", "128",
                                                "--format", "csv", "--threads", "2"])
                XCTAssertEqual(run.status, 0, run.stderr)
                let ours = csvOutputs(run.stdout)
                let largest = exact.map(abs).max()!
                let vs64 = maxAbsDifference(ours, exact), vs32 = maxAbsDifference(ours, float32), kerasOwn = maxAbsDifference(float32, exact)
                XCTAssertLessThanOrEqual(vs64, 1e-5 * max(1, largest), base)
                XCTAssertLessThanOrEqual(vs32, 1e-5 + kerasOwn, base)
                if model == "seed_mlp" { XCTAssertLessThanOrEqual(vs32, 1e-5, base) }
                print("\(base): --bn-statistics batch vs Keras training=True: float64 \(vs64), float32 \(vs32) (Keras float32 vs float64: \(kerasOwn))")
                // Another batch size gives other answers (the statistics are the batch's).
                let other = try runTool("bnrun", [TestPaths.fixture("\(base).h5"), images, "--bn-statistics", "batch", "--batch", "64", "--format", "csv"])
                XCTAssertGreaterThan(maxAbsDifference(csvOutputs(other.stdout), exact), 1e-4, base)
            }
        }
    }

    /// A faded scan (contrast 0.3, background 0.6 of white) breaks the seed MLP; recalibrating
    /// on the shifted *training* images only, without labels, restores the accuracy on the
    /// shifted test images; the recalibrated .h5 then folds and runs with the same answers.
    func testRecalibrationAdaptsToAShiftedDomain() throws {
        let folder = try temporaryFolder()
        func shifted(_ source: String, _ name: String) throws -> String {
            let images = try IDXReader.read(path: source)
            let values = images.floats(0..<images.count).map { UInt8(min(255, max(0, (0.3 * $0 + 0.6 * 255).rounded()))) }
            let path = folder.appendingPathComponent(name).path
            try writeIDXBytes(values, dimensions: images.dimensions, to: path)
            return path
        }
        let train = try shifted(TestPaths.fixture("mnist/train-images.idx3-ubyte.gz"), "train.idx")
        let test = try shifted(TestPaths.testImages, "test.idx")
        let adapted = folder.appendingPathComponent("adapted.h5").path, folded = folder.appendingPathComponent("adapted.bin").path
        for producer in KerasReference.producers {
            let model = TestPaths.fixture("seed_mlp_\(producer).h5")
            func accuracy(_ model: String) throws -> Double {
                let run = try runTool("bnrun", [model, test, "--labels", TestPaths.testLabels, "--format", "summary"])
                XCTAssertEqual(run.status, 0, run.stderr)
                let line = try XCTUnwrap(run.stdout.split(separator: "\n").first { $0.hasPrefix("accuracy:") })
                return try XCTUnwrap(Double(line.split(separator: " ")[1]))
            }
            let recalibrate = try runTool("bnconv", ["recalibrate", model, "--images", train, "-o", adapted])
            XCTAssertEqual(recalibrate.status, 0, recalibrate.stderr)
            XCTAssertTrue(recalibrate.stdout.contains("on 60000 images"), recalibrate.stdout)
            let fold = try runTool("bnconv", ["fold", adapted, "-o", folded])
            XCTAssertEqual(fold.status, 0, fold.stderr)
            let before = try accuracy(model), after = try accuracy(adapted), afterFolded = try accuracy(folded)
            print("seed_mlp_\(producer), faded scan: accuracy \(before) -> \(after) recalibrated (\(afterFolded) folded)")
            XCTAssertLessThan(before, 0.3, producer)
            XCTAssertGreaterThan(after, 0.94, producer)
            XCTAssertEqual(after, afterFolded, accuracy: 0.0005, producer)
        }
    }

    /// With labels, the accuracy on the images before and after is reported; --limit is kept.
    func testLabelsAndLimit() throws {
        let out = try temporaryFolder().appendingPathComponent("m.bin").path
        let run = try runTool("bnconv", ["recalibrate", TestPaths.fixture("small_cnn_keras3.h5"), "--images", TestPaths.testImages,
                                         "--labels", TestPaths.testLabels, "--limit", "1000", "-o", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("accuracy before: "), run.stdout)
        XCTAssertTrue(run.stdout.contains("accuracy after: "), run.stdout)
        XCTAssertTrue(run.stdout.contains("/1000)"), run.stdout)
        XCTAssertTrue(run.stdout.contains("over 1000 values each") || run.stdout.contains("over \(1000 * 28 * 28) values each"), run.stdout)
    }

    /// Peak memory does not grow with the number of images: 60,000 images (a gzip file
    /// streamed) against 10,000.
    func testRecalibrationMemoryIsFlat() throws {
        let folder = try temporaryFolder()
        var peaks: [Int] = []
        for images in [TestPaths.testImages, TestPaths.fixture("mnist/train-images.idx3-ubyte.gz")] {
            let (status, peak) = try runToolMeasuringPeakMemory("bnconv", ["recalibrate", TestPaths.fixture("small_cnn_keras3.h5"),
                                                                           "--images", images, "-o", folder.appendingPathComponent("m.bin").path])
            XCTAssertEqual(status, 0)
            peaks.append(peak)
        }
        print("recalibrate small_cnn peak memory: 10k images \(peaks[0] >> 20) MiB, 60k images \(peaks[1] >> 20) MiB")
        XCTAssertLessThan(peaks[1], peaks[0] + 8 << 20)
    }

    // MARK: Bad input: a clear error, a non-zero exit, no output file

    private func assertRefused(_ tool: String, _ arguments: [String], status: Int32 = 65, mentioning words: [String],
                               noFile output: String?, line: UInt = #line) throws {
        let run = try runTool(tool, arguments)
        XCTAssertEqual(run.status, status, run.stderr, line: line)
        for word in words { XCTAssertTrue(run.stderr.contains(word), "'\(word)' not in: \(run.stderr)", line: line) }
        if status != 64 { XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr, line: line) }
        if let output { XCTAssertFalse(FileManager.default.fileExists(atPath: output), line: line) }
    }

    func testBadInputIsRefusedClearly() throws {
        let folder = try temporaryFolder()
        let out = folder.appendingPathComponent("out.h5").path
        let seed = TestPaths.fixture("seed_mlp_keras2.h5")
        let folded = folder.appendingPathComponent("folded.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", seed, "-o", folded]).status, 0)
        // A folded model has no BN left.
        try assertRefused("bnconv", ["recalibrate", folded, "--images", TestPaths.testImages, "-o", out],
                          mentioning: [folded, "no BatchNormalization layer", "folded"], noFile: out)
        try assertRefused("bnrun", [folded, TestPaths.testImages, "--bn-statistics", "batch"],
                          mentioning: [folded, "no BatchNormalization layer", "folded"], noFile: nil)
        // Images of the wrong shape (labels are one value each).
        try assertRefused("bnconv", ["recalibrate", seed, "--images", TestPaths.testLabels, "-o", out],
                          mentioning: [TestPaths.testLabels, "1 values", "784"], noFile: out)
        // An image file with no images.
        let empty = folder.appendingPathComponent("empty.idx").path
        try writeIDXBytes([], dimensions: [0, 28, 28], to: empty)
        try assertRefused("bnconv", ["recalibrate", seed, "--images", empty, "-o", out], mentioning: [empty, "no images"], noFile: out)
        // A damaged image file: the error comes after a pass may have begun; nothing is written.
        let truncated = folder.appendingPathComponent("truncated.idx").path
        let images = try IDXReader.read(path: TestPaths.testImages)
        try writeIDXBytes(images.floats(0..<(100 * 784)).map { UInt8($0) }, dimensions: [200, 28, 28], to: truncated)
        try assertRefused("bnconv", ["recalibrate", seed, "--images", truncated, "-o", out], mentioning: [truncated], noFile: out)
        // Missing files, unknown output format, unknown mode.
        try assertRefused("bnconv", ["recalibrate", seed, "--images", folder.appendingPathComponent("nope.idx").path, "-o", out],
                          mentioning: ["nope.idx"], noFile: out)
        try assertRefused("bnconv", ["recalibrate", seed, "--images", TestPaths.testImages, "-o", folder.appendingPathComponent("x.txt").path],
                          status: 64, mentioning: ["x.txt"], noFile: nil)
        let usage = try runTool("bnrun", [seed, TestPaths.testImages, "--bn-statistics", "median"])
        XCTAssertEqual(usage.status, 64)
        XCTAssertTrue(usage.stderr.contains("median"), usage.stderr)
    }
}
