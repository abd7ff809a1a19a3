import Foundation
import HDF5
import KerasHDF5
import ModelIR
import TestSupport
import XCTest

/// Crafted Keras files: what a hostile file uses against a loader is refused
/// with a clear error naming the file, never followed.
final class HostileFileTests: XCTestCase {
    private var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder() }

    /// A copy of the seed fixture with the first BN's gamma replaced by `replace`.
    private func crafted(_ name: String, _ replace: (HDF5Group, String) throws -> Void) throws -> String {
        let path = folder.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("seed_mlp_keras2.h5"), toPath: path)
        let group = try HDF5File.open(path, writable: true).root().group("model_weights/batch_normalization")
        let gamma = try group.stringArrayAttribute("weight_names")[0]
        try group.deleteLink(gamma)
        try replace(group, gamma)
        return path
    }

    private func assertRefused(_ path: String, _ words: [String], line: UInt = #line) {
        XCTAssertThrowsError(try KerasModelReader.read(path: path), line: line) { error in
            XCTAssertTrue(error is KerasFileError, "\(error)", line: line)
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix(path), text, line: line)
            for word in words { XCTAssertTrue(text.contains(word), "'\(word)' in \(text)", line: line) }
        }
    }

    private let fifty = [Float](repeating: 1, count: 50)

    func testSoftLinkInAWeightPathIsRefused() throws {
        let path = try crafted("soft.h5") { group, gamma in
            // Point gamma at beta through a soft link.
            let beta = try group.stringArrayAttribute("weight_names")[1]
            try group.createSoftLink(gamma, to: "/model_weights/batch_normalization/" + beta)
        }
        assertRefused(path, ["refused", "soft or external link"])
    }

    func testExternalLinkIsRefused() throws {
        let other = folder.appendingPathComponent("other.h5").path
        try HDF5File.create(other).root().createFloatDataset("gamma", shape: [50], values: fifty)
        let path = try crafted("external-link.h5") { group, gamma in
            try group.createExternalLink(gamma, file: other, object: "/gamma")
        }
        assertRefused(path, ["refused", "soft or external link"])
    }

    func testExternalRawStorageIsRefused() throws {
        let path = try crafted("external-storage.h5") { group, gamma in
            try group.createFloatDataset(gamma, shape: [50], values: self.fifty, storage: .external(file: "/etc/hostname"))
        }
        assertRefused(path, ["refused", "external raw storage"])
    }

    func testUnknownFilterIsRefusedAndDeflateIsAccepted() throws {
        let fletcher = try crafted("fletcher.h5") { group, gamma in
            try group.createFloatDataset(gamma, shape: [50], values: self.fifty, storage: .fletcher32)
        }
        assertRefused(fletcher, ["refused", "filter 3"])
        let deflate = try crafted("deflate.h5") { group, gamma in
            try group.createFloatDataset(gamma, shape: [50], values: self.fifty, storage: .deflate)
        }
        XCTAssertNoThrow(try KerasModelReader.read(path: deflate))
    }

    func testNonFiniteAndNegativeVarianceAreRefused() throws {
        var values = fifty
        values[7] = .nan
        let nan = try crafted("nan.h5") { group, gamma in try group.createFloatDataset(gamma, shape: [50], values: values) }
        assertRefused(nan, ["batch_normalization", "non-finite", "index 7"])
        let path = folder.appendingPathComponent("variance.h5").path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("seed_mlp_keras3.h5"), toPath: path)
        do {
            let group = try HDF5File.open(path, writable: true).root().group("model_weights/batch_normalization_1")
            let variance = try group.stringArrayAttribute("weight_names")[3]
            try group.deleteLink(variance)
            var negative = fifty
            negative[3] = -0.5
            try group.createFloatDataset(variance, shape: [50], values: negative)
        }
        assertRefused(path, ["batch_normalization_1", "moving_variance[3]"])
    }

    func testIntegerWeightsAndWrongRankAreRefused() throws {
        let ints = try crafted("ints.h5") { group, gamma in try group.createInt64Dataset(gamma, shape: [50], values: [Int64](repeating: 1, count: 50)) }
        assertRefused(ints, ["batch_normalization", "floating-point"])
        let rank = try crafted("rank.h5") { group, gamma in try group.createFloatDataset(gamma, shape: [5, 10], values: self.fifty) }
        assertRefused(rank, ["batch_normalization", "[5, 10]"])
    }

    func testModelWeightsAsASoftLinkIsRefused() throws {
        let path = folder.appendingPathComponent("moved.h5").path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("seed_mlp_keras2.h5"), toPath: path)
        do {
            let root = try HDF5File.open(path, writable: true).root()
            try root.copy("model_weights", to: root, as: "elsewhere")
            try root.deleteLink("model_weights")
            try root.createSoftLink("model_weights", to: "/elsewhere")
        }
        assertRefused(path, ["refused", "model_weights"])
    }

    func testLambdaLayersAreNeverRun() throws {
        let path = folder.appendingPathComponent("lambda.h5").path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("seed_mlp_keras3.h5"), toPath: path)
        let root = try HDF5File.open(path, writable: true).root()
        let config = try root.stringAttribute("model_config")
        try root.setStringAttribute("model_config", config.replacingOccurrences(
            of: "{\"class_name\": \"Activation\"", with: "{\"class_name\": \"Lambda\", \"function\": \"import os; os.system('x')\""))
        assertRefused(path, ["Lambda", "never runs"])
    }

    func testDeeplyNestedConfigIsRefused() throws {
        let path = folder.appendingPathComponent("deep.h5").path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("seed_mlp_keras3.h5"), toPath: path)
        let root = try HDF5File.open(path, writable: true).root()
        try root.setStringAttribute("model_config", String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000))
        assertRefused(path, ["nested deeper"])
    }
}
