import BNKit
import Foundation
import TestSupport
import XCTest

/// The library as a user sees it: only `import BNKit` (no internal access).
final class ModelAPITests: XCTestCase {
    static let models = ["seed_mlp", "small_cnn", "resnet", "edge_cases", "nested_shared", "normalized_cnn"]

    private func fixture(_ model: String, _ producer: String) -> String {
        TestPaths.fixture("\(model)_\(producer).h5")
    }

    /// Every weight of every layer, bit for bit.
    private func assertSameWeights(_ a: Model, _ b: Model, _ what: String, line: UInt = #line) throws {
        XCTAssertEqual(a.layers.map(\.name), b.layers.map(\.name), what, line: line)
        var checked = 0
        for layer in a.layers {
            for info in layer.weights {
                let x = try a.weight(info.role, of: layer.name), y = try b.weight(info.role, of: layer.name)
                XCTAssertTrue(x.isBitIdentical(to: y), "\(what): \(layer.name)/\(info.role.rawValue)", line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, line: line)
    }

    func testRoundTripsAreBitExactForEveryFixture() throws {
        let folder = try temporaryFolder()
        for model in Self.models {
            for producer in KerasReference.producers {
                let original = try Model.load(path: fixture(model, producer))
                let what = "\(model) \(producer)"
                // h5 -> h5
                let h5 = folder.appendingPathComponent("\(model)_\(producer).h5").path
                try original.save(to: h5)
                let fromH5 = try Model.load(path: h5)
                try assertSameWeights(original, fromH5, "\(what) h5 -> h5")
                XCTAssertEqual(fromH5.keras?.trainingConfig, original.keras?.trainingConfig)
                XCTAssertEqual(fromH5.keras?.optimizerWeights.count, original.keras?.optimizerWeights.count)
                // h5 -> bin -> h5
                let bin = folder.appendingPathComponent("\(model)_\(producer).bin").path
                try original.save(to: bin)
                let fromBin = try Model.load(path: bin)
                try assertSameWeights(original, fromBin, "\(what) h5 -> bin")
                XCTAssertTrue(fromBin.graph.nodes.contains { $0.operation.kind == "batch_norm" }, "unfolded: BN layers kept")
                let back = folder.appendingPathComponent("\(model)_\(producer).back.h5").path
                try fromBin.save(to: back)
                let again = try Model.load(path: back)
                try assertSameWeights(original, again, "\(what) h5 -> bin -> h5")
                let originalState = original.keras?.optimizerWeights ?? []
                let state = again.keras?.optimizerWeights ?? []
                XCTAssertEqual(state.count, originalState.count)
                XCTAssertTrue(zip(state, originalState).allSatisfy { $0.isBitIdentical(to: $1) }, "\(what): optimizer state bit for bit")
                // bin -> bin is byte-identical
                let bin2 = folder.appendingPathComponent("\(model)_\(producer).2.bin").path
                try fromBin.save(to: bin2)
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: bin2)), try Data(contentsOf: URL(fileURLWithPath: bin)), what)
            }
        }
    }

    func testGetAndSetWeightsByLayerAndRole() throws {
        var model = try Model.load(path: fixture("seed_mlp", "keras3"))
        let bn = try XCTUnwrap(model.layers.first { $0.kind == "batch_norm" })
        XCTAssertEqual(bn.weights.map(\.role), [.gamma, .beta, .movingMean, .movingVariance])
        let variance = try model.weight(.movingVariance, of: bn.name)
        let doubled = try Tensor(shape: variance.shape, values: variance.values.map { $0 * 2 })
        try model.setWeight(.movingVariance, of: bn.name, to: doubled)
        XCTAssertEqual(try model.weight(.movingVariance, of: bn.name), doubled)
        // Saved and loaded, the change is there, in both formats.
        let folder = try temporaryFolder()
        for name in ["changed.h5", "changed.bin"] {
            let path = folder.appendingPathComponent(name).path
            try model.save(to: path)
            XCTAssertEqual(try Model.load(path: path).weight(.movingVariance, of: bn.name), doubled, name)
        }
        XCTAssertThrowsError(try model.setWeight(.gamma, of: bn.name, to: Tensor([1, 2, 3]))) {
            XCTAssertEqual($0 as? BNKitError, .weightShapeMismatch(layer: bn.name, role: .gamma, expected: [50], found: [3]))
        }
        XCTAssertThrowsError(try model.weight(.kernel, of: bn.name)) {
            XCTAssertEqual($0 as? BNKitError, .noSuchWeight(layer: bn.name, role: .kernel))
        }
        XCTAssertThrowsError(try model.weight(.kernel, of: "nope")) { XCTAssertEqual($0 as? BNKitError, .noSuchLayer(layer: "nope")) }
    }

    func testLoadFromDataDetectsTheFormat() throws {
        for path in [fixture("small_cnn", "keras2"), TestPaths.fixture("small_cnn_keras3.keras")] {
            let model = try Model.load(data: try Data(contentsOf: URL(fileURLWithPath: path)), name: "upload")
            XCTAssertEqual(model.layers.count, try Model.load(path: path).layers.count)
        }
        let bin = try temporaryFolder().appendingPathComponent("m.bin").path
        try Model.load(path: fixture("seed_mlp", "keras2")).save(to: bin)
        let fromData = try Model.load(data: try Data(contentsOf: URL(fileURLWithPath: bin)))
        XCTAssertEqual(fromData.sourceFormat, .native)
        XCTAssertThrowsError(try Model.load(data: Data("hello".utf8), name: "upload")) { XCTAssertTrue("\($0)".contains("upload"), "\($0)") }
    }

    func testTypedErrorsNameTheFile() throws {
        XCTAssertThrowsError(try Model.load(path: "/nonexistent.h5")) { XCTAssertEqual($0 as? BNKitError, .noSuchFile(path: "/nonexistent.h5")) }
        let folder = try temporaryFolder()
        let text = folder.appendingPathComponent("notes.txt").path
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: text))
        XCTAssertThrowsError(try Model.load(path: text)) { XCTAssertEqual($0 as? BNKitError, .unknownFormat(path: text)) }
        let model = try Model.load(path: fixture("seed_mlp", "keras2"))
        XCTAssertThrowsError(try model.save(to: folder.appendingPathComponent("m.keras").path)) {
            guard case .cannotSave = $0 as? BNKitError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try model.save(to: "/nonexistent-folder/m.bin")) { XCTAssertTrue("\($0)".contains("/nonexistent-folder/m.bin"), "\($0)") }
    }

    /// A save that fails midway (here: the model cannot be expressed in the
    /// target, or the writer throws) leaves the previous file intact and no
    /// temporary file behind.
    func testFailedSaveLeavesThePreviousFileIntact() throws {
        let folder = try temporaryFolder()
        let target = folder.appendingPathComponent("model.h5").path
        let original = try Model.load(path: fixture("seed_mlp", "keras2"))
        try original.save(to: target)
        let before = try Data(contentsOf: URL(fileURLWithPath: target))
        // A model whose activation no Keras layer can hold makes the writer throw after it began writing.
        let dense = try Dense(kernel: Tensor(shape: [2, 2], values: [1, 2, 3, 4]), bias: nil, activation: .gelu(approximate: true))
        let odd = Model(graph: try Graph.sequential(name: "odd", inputShape: [2], layers: [("d", .dense(dense))]))
        XCTAssertThrowsError(try odd.save(to: target))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["model.h5"])
    }
}
