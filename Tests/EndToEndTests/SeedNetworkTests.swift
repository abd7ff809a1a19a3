import Foundation
import TestSupport
import XCTest

/// The product's spine, through the built binaries: Keras .h5 → `bnconv fold`
/// → .bin → `bnrun` on the 10,000 MNIST test images, compared with Keras's
/// own answers stored next to each fixture.
final class SeedNetworkTests: XCTestCase {
    /// Parses `bnrun --format csv` output: predictions and output rows.
    private func parseCSV(_ text: String) throws -> (predictions: [Int], outputs: [[Float]], header: String) {
        var lines = text.split(separator: "\n").map(String.init)
        let header = lines.removeFirst()
        var predictions: [Int] = []
        var outputs: [[Float]] = []
        for (i, line) in lines.enumerated() {
            let fields = line.split(separator: ",").map(String.init)
            XCTAssertEqual(Int(fields[0]), i)
            predictions.append(try XCTUnwrap(Int(fields[1])))
            outputs.append(try fields.dropFirst(2).map { try XCTUnwrap(Float($0)) })
        }
        return (predictions, outputs, header)
    }

    private func foldAndRun(_ reference: KerasReference) throws -> (csv: String, summary: String, bin: String) {
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("model.bin").path
        let fold = try runTool("bnconv", ["fold", reference.modelPath, "-o", bin])
        XCTAssertEqual(fold.status, 0, fold.stderr)
        XCTAssertTrue(fold.stdout.contains("folded into"), fold.stdout)
        let csv = try runTool("bnrun", [bin, TestPaths.testImages, "--format", "csv"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        let summary = try runTool("bnrun", [bin, TestPaths.testImages, "--labels", TestPaths.testLabels, "--format", "summary"])
        XCTAssertEqual(summary.status, 0, summary.stderr)
        return (csv.stdout, summary.stdout, bin)
    }

    func testFoldedModelMatchesKeras() throws {
        for producer in KerasReference.producers {
            let reference = try KerasReference(producer: producer)
            let (csvText, summary, _) = try foldAndRun(reference)
            let csv = try parseCSV(csvText)
            XCTAssertEqual(csv.header, "index,prediction," + (0..<10).map { "p\($0)" }.joined(separator: ","))
            XCTAssertEqual(csv.predictions.count, 10_000)
            let agreeing = zip(csv.predictions, reference.classes).filter { $0 == $1 }.count
            XCTAssertEqual(agreeing, 10_000, "\(producer): classes equal to Keras's")
            let first = Array(csv.outputs.prefix(reference.outputs.count / reference.outputSize).joined())
            let difference = maxAbsDifference(first, reference.outputs)
            XCTAssertLessThanOrEqual(difference, 1e-5, "\(producer): max abs difference to Keras on the first 1000")
            print("\(producer): folded .bin vs Keras: \(agreeing)/10000 classes, max abs difference \(difference)")
            let expected = "accuracy: " + String(format: "%.4f", reference.accuracy)
            XCTAssertTrue(summary.contains(expected), "\(producer): expected '\(expected)' in\n\(summary)")
        }
    }

    /// libhdf5 (and the libraries it needs) is opened only for HDF5 files: a .bin runs
    /// without it. The dynamic loader's own log (LD_DEBUG=files) lists what was loaded.
    func testHDF5IsLoadedOnlyForHDF5Files() throws {
        let folder = try temporaryFolder()
        let bin = folder.appendingPathComponent("m.bin").path
        let reference = try KerasReference(producer: "keras3")
        XCTAssertEqual(try runTool("bnconv", ["fold", reference.modelPath, "-o", bin]).status, 0)
        let fromBin = try runTool("bnrun", [bin, TestPaths.testImages, "--format", "summary"], environment: ["LD_DEBUG": "files"])
        XCTAssertEqual(fromBin.status, 0)
        XCTAssertTrue(fromBin.stderr.contains("libswiftCore") || fromBin.stderr.contains("libc.so"), "no loader log: \(fromBin.stderr.prefix(300))")
        XCTAssertFalse(fromBin.stderr.contains("libhdf5"), "libhdf5 was loaded for a .bin model")
        // An .h5 is parsed in a child process (docs/HOSTILE_INPUT.md): libhdf5 is loaded there, not here.
        let fromH5 = try runTool("bnrun", [reference.modelPath, TestPaths.testImages, "--format", "summary"], environment: ["LD_DEBUG": "files"])
        XCTAssertEqual(fromH5.status, 0)
        XCTAssertFalse(fromH5.stderr.contains("libhdf5"), "libhdf5 was loaded into bnrun itself for an .h5 model")
        let inProcess = try runTool("bnrun", [reference.modelPath, TestPaths.testImages, "--format", "summary"],
                                    environment: ["LD_DEBUG": "files", "BNKIT_HDF5_IN_PROCESS": "1"])
        XCTAssertEqual(inProcess.status, 0)
        XCTAssertTrue(inProcess.stderr.contains("libhdf5"), "libhdf5 was not loaded for an .h5 model read in process")
    }

    func testUnfoldedH5AndFoldedBinAgree() throws {
        for producer in KerasReference.producers {
            let reference = try KerasReference(producer: producer)
            let (binCSV, _, _) = try foldAndRun(reference)
            let h5 = try runTool("bnrun", [reference.modelPath, TestPaths.testImages, "--format", "csv"])
            XCTAssertEqual(h5.status, 0, h5.stderr)
            let folded = try parseCSV(binCSV), unfolded = try parseCSV(h5.stdout)
            XCTAssertEqual(folded.predictions, unfolded.predictions)
            let difference = maxAbsDifference(Array(folded.outputs.joined()), Array(unfolded.outputs.joined()))
            XCTAssertLessThanOrEqual(difference, 1e-5)
            print("\(producer): unfolded .h5 vs folded .bin over 10000 images: max abs difference \(difference)")
        }
    }

    func testOutputFileAndFormats() throws {
        let reference = try KerasReference(producer: "keras2")
        let (_, _, bin) = try foldAndRun(reference)
        let folder = try temporaryFolder()
        let out = folder.appendingPathComponent("report.json").path
        let run = try runTool("bnrun", [bin, TestPaths.testImages, "--labels", TestPaths.testLabels, "--format", "json", "--output", out])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(run.stdout, "")
        // JSON Lines: one object per image, then a summary object.
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 10_001)
        let first = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(first["index"] as? Int, 0)
        XCTAssertEqual(first["prediction"] as? Int, reference.classes[0])
        XCTAssertEqual((first["outputs"] as? [Double])?.count, 10)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[10_000].utf8)) as? [String: Any])
        XCTAssertEqual(json["images"] as? Int, 10_000)
        XCTAssertEqual(json["accuracy"] as? Double ?? -1, reference.accuracy, accuracy: 1e-9)
        let text = try runTool("bnrun", [bin, TestPaths.testImages, "--labels", TestPaths.testLabels])
        XCTAssertEqual(text.stdout.split(separator: "\n").count, 10_002)
        XCTAssertTrue(text.stdout.hasPrefix("0\t\(reference.classes[0])\n"))
        let help = try runTool("bnrun", ["--help"])
        XCTAssertTrue(help.stdout.contains("1/255"), help.stdout)
        XCTAssertTrue(help.stdout.contains("Examples"), help.stdout)
    }
}
