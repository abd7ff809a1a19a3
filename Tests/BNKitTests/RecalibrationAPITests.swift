import BNKit
import Foundation
import IDX
import TestSupport
import XCTest

/// Recalibration from Swift, as an app would adapt a model on its own data.
final class RecalibrationAPITests: XCTestCase {
    /// `Model.recalibrateBatchNorm` on batches held in memory gives Keras's float64
    /// statistics (the committed reference), keeps every other weight, and the model
    /// saves and reloads with the new statistics.
    func testRecalibrateFromBatchesInMemory() throws {
        for producer in KerasReference.producers {
            let path = TestPaths.fixture("small_cnn_\(producer).h5")
            var model = try Model.load(path: path)
            let original = model
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
                TestPaths.fixture("bn_statistics/small_cnn_\(producer).recalibrated.json")))) as! [String: Any]
            let limit = json["limit"] as! Int
            let layers = json["layers"] as! [String: [String: [Double]]]
            let images = try IDXReader.read(path: TestPaths.testImages)
            // Batches of uneven sizes: 7 images, then 500 at a time.
            var batches: [[Float]] = [images.floats(0..<(7 * 784), divisor: 255)]
            for start in stride(from: 7, to: limit, by: 500) {
                batches.append(images.floats((start * 784)..<(min(limit, start + 500) * 784), divisor: 255))
            }
            let changes = try model.recalibrateBatchNorm(using: batches, threads: 2)
            XCTAssertEqual(Set(changes.map(\.layer)), Set(layers.keys))
            for (name, expected) in layers {
                let mean = try model.weight(.movingMean, of: name).values, variance = try model.weight(.movingVariance, of: name).values
                for c in mean.indices {
                    let spread = max(abs(expected["mean"]![c]), expected["variance"]![c].squareRoot())
                    XCTAssertEqual(Double(mean[c]), expected["mean"]![c], accuracy: 1e-5 * spread, "\(producer) \(name) \(c)")
                    XCTAssertEqual(Double(variance[c]), expected["variance"]![c], accuracy: 1e-5 * expected["variance"]![c], "\(producer) \(name) \(c)")
                }
                XCTAssertEqual(try model.weight(.gamma, of: name), try original.weight(.gamma, of: name))
            }
            let saved = try temporaryFolder().appendingPathComponent("adapted.h5").path
            try model.save(to: saved)
            let reloaded = try Model.load(path: saved)
            for name in layers.keys {
                XCTAssertTrue(try reloaded.weight(.movingVariance, of: name).isBitIdentical(to: model.weight(.movingVariance, of: name)))
            }
        }
    }
}
