import Foundation
import TestSupport
import XCTest

final class InspectVerifyTests: XCTestCase {
    func testInspectShowsLayersStatisticsAndFoldPlan() throws {
        let h5 = try runTool("bnconv", ["inspect", TestPaths.fixture("edge_cases_keras2.h5")])
        XCTAssertEqual(h5.status, 0, h5.stderr)
        for expected in ["Keras HDF5 (.h5), keras_version 2.", "depthwise 3x3", "(12, 12, 16)", "total parameters:",
                         "BatchNormalization statistics:", "epsilon 0.01", "no beta (center=False)", "no gamma (scale=False)",
                         "fold plan:", "(the layer after it)", "pads its input"] {
            XCTAssertTrue(h5.stdout.contains(expected), "missing '\(expected)' in\n\(h5.stdout)")
        }
        let archive = try runTool("bnconv", ["inspect", TestPaths.fixture("resnet_keras3.keras")])
        XCTAssertEqual(archive.status, 0, archive.stderr)
        XCTAssertTrue(archive.stdout.contains("Keras 3 archive (.keras)"), archive.stdout)
        let bin = try temporaryFolder().appendingPathComponent("m.bin").path
        XCTAssertEqual(try runTool("bnconv", ["fold", TestPaths.fixture("resnet_keras3.keras"), "-o", bin]).status, 0)
        let native = try runTool("bnconv", ["inspect", bin])
        XCTAssertEqual(native.status, 0, native.stderr)
        XCTAssertTrue(native.stdout.contains("bnkit .bin, version 1; checksums of preamble, header and data verified"), native.stdout)
        XCTAssertTrue(native.stdout.contains("no BatchNormalization layers"), native.stdout)
    }

    func testVerifyReportsAndFailsBeyondTheTolerance() throws {
        let model = TestPaths.fixture("small_cnn_keras3.h5")
        let run = try runTool("bnconv", ["verify", model, TestPaths.testImages, "--labels", TestPaths.testLabels])
        XCTAssertEqual(run.status, 0, run.stderr + run.stdout)
        for expected in ["10000 images", "class agreement: 10000/10000", "accuracy unfolded: ", "OK: within the tolerance 1e-05"] {
            XCTAssertTrue(run.stdout.contains(expected), "missing '\(expected)' in\n\(run.stdout)")
        }
        let generated = try runTool("bnconv", ["verify", TestPaths.fixture("seed_mlp_keras2.h5")])
        XCTAssertEqual(generated.status, 0, generated.stdout)
        XCTAssertTrue(generated.stdout.contains("512 generated inputs"))
        // The fold is exact only to float rounding: a zero tolerance must fail, with status 1.
        let strict = try runTool("bnconv", ["verify", TestPaths.fixture("seed_mlp_keras2.h5"), TestPaths.testImages, "--tolerance", "0"])
        XCTAssertEqual(strict.status, 1, strict.stdout)
        XCTAssertTrue(strict.stdout.contains("FAILED"), strict.stdout)
    }
}
