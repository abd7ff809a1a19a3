import BNFolding
import Foundation
import IDX
import KerasHDF5
import ModelIR
import Runtime
import TestSupport
import XCTest

/// Every Keras-made fixture from both producers: the unfolded and the folded
/// model predict Keras's class on all 10,000 test images and Keras's output
/// values within 1e-5 on the first 1000.
final class FixtureModelsTests: XCTestCase {
    static let models = ["seed_mlp", "small_cnn", "resnet", "edge_cases", "nested_shared", "normalized_cnn"]

    private static let images: IDXArray = try! IDXReader.read(path: TestPaths.testImages)

    private func outputs(_ graph: Graph, count: Int) throws -> (values: [Float], classes: [Int]) {
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.inputSize, 784)
        var values: [Float] = []
        var start = 0
        while start < count {
            let end = min(start + 500, count)
            values += try executor.run(Self.images.floats((start * 784)..<(end * 784), divisor: 255))
            start = end
        }
        return (values, executor.classes(of: values))
    }

    private func check(_ graph: Graph, against reference: KerasReference, what: String) throws {
        let (values, classes) = try outputs(graph, count: 10_000)
        let agreeing = zip(classes, reference.classes).filter { $0 == $1 }.count
        let difference = maxAbsDifference(Array(values.prefix(reference.outputs.count)), reference.outputs)
        print("\(what): \(agreeing)/10000 classes equal Keras's, max abs difference \(difference) on the first 1000")
        XCTAssertEqual(agreeing, 10_000, what)
        XCTAssertLessThanOrEqual(difference, 1e-5, what)
    }

    func testEveryFixtureFoldedAndUnfoldedMatchesKeras() throws {
        for model in Self.models {
            for producer in KerasReference.producers {
                let reference = try KerasReference(model: model, producer: producer)
                let graph = try KerasModelReader.read(path: reference.modelPath).graph
                let folded = try BNFolder.fold(graph)
                XCTAssertFalse(folded.graph.nodes.contains { $0.operation.kind == "batch_norm" })
                try check(graph, against: reference, what: "\(model) \(producer) unfolded")
                try check(folded.graph, against: reference, what: "\(model) \(producer) folded")
            }
        }
    }

    /// The benchmark's bigger CNN (Keras 3 only): its 3×3 convs run by Winograd F(2×2, 3×3).
    func testBigCNNMatchesKeras() throws {
        let reference = try KerasReference(model: "big_cnn", producer: "keras3")
        let graph = try KerasModelReader.read(path: reference.modelPath).graph
        try check(try BNFolder.fold(graph).graph, against: reference, what: "big_cnn keras3 folded")
    }

    func testKerasArchivesReadLikeTheirH5() throws {
        for model in ["seed_mlp", "small_cnn", "resnet"] {
            let reference = try KerasReference(model: model, producer: "keras3")
            let archive = TestPaths.fixture("\(model)_keras3.keras")
            let fromArchive = try KerasModelReader.read(path: archive)
            XCTAssertEqual(fromArchive.container, .archive)
            let fromH5 = try KerasModelReader.read(path: reference.modelPath).graph
            XCTAssertEqual(fromArchive.graph.nodes.map(\.operation), fromH5.nodes.map(\.operation), model)
            try check(try BNFolder.fold(fromArchive.graph).graph, against: reference, what: "\(model) .keras folded")
        }
    }

    func testFoldPlansOfTheFixtures() throws {
        func plan(_ model: String, _ producer: String) throws -> [FoldEvent] {
            try BNFolder.fold(try KerasModelReader.read(path: try KerasReference(model: model, producer: producer).modelPath).graph).events
        }
        for producer in KerasReference.producers {
            let edge = try plan("edge_cases", producer)
            XCTAssertEqual(edge.count, 6)
            XCTAssertEqual(edge.filter { if case .foldedIntoNext = $0.outcome { true } else { false } }.count, 2, "BN -> valid conv, BN -> Dense")
            XCTAssertEqual(edge.filter { if case .keptAsAffine = $0.outcome { true } else { false } }.count, 1, "BN -> padded conv after elu")
            let shared = try plan("nested_shared", producer)
            XCTAssertEqual(shared.count, 3)
            XCTAssertEqual(shared.filter { if case .keptAsAffine(let r) = $0.outcome { r.contains("shared") } else { false } }.count, 2)
            XCTAssertTrue(try plan("resnet", producer).allSatisfy { if case .foldedIntoPrevious = $0.outcome { true } else { false } })
        }
    }

    func testMultiInputModelIsReadAndRefusedClearly() throws {
        for producer in KerasReference.producers {
            let graph = try KerasModelReader.read(path: TestPaths.fixture("two_inputs_\(producer).h5")).graph
            XCTAssertEqual(graph.outputs.count, 2)
            XCTAssertThrowsError(try Executor(graph: graph)) { error in
                XCTAssertTrue("\(error)".contains("several inputs") || "\(error)".contains("outputs"), "\(error)")
            }
        }
    }
}
