import Foundation
import HDF5
import KerasHDF5
import ModelIR
import TestSupport
import XCTest

final class KerasReaderTests: XCTestCase {
    /// A writable copy of a fixture in a fresh temporary folder.
    private func copyOfFixture(_ producer: String) throws -> String {
        let copy = try temporaryFolder().appendingPathComponent("model.h5").path
        try FileManager.default.copyItem(atPath: try KerasReference(producer: producer).modelPath, toPath: copy)
        return copy
    }

    private func expectError(_ path: String, file: StaticString = #filePath, line: UInt = #line,
                             _ matches: (KerasFileError) -> Bool) {
        XCTAssertThrowsError(try KerasModelReader.read(path: path), file: file, line: line) { error in
            guard let error = error as? KerasFileError else { return XCTFail("not a KerasFileError: \(error)", file: file, line: line) }
            XCTAssertTrue(matches(error), "unexpected error: \(error)", file: file, line: line)
            XCTAssertTrue("\(error)".hasPrefix(path), "the message names the file: \(error)", file: file, line: line)
        }
    }

    func testSeedNetworkStructure() throws {
        for producer in KerasReference.producers {
            let graph = try KerasModelReader.read(path: try KerasReference(producer: producer).modelPath).graph
            XCTAssertEqual(graph.nodes.map(\.operation.kind),
                           ["input", "dense", "batch_norm", "activation", "dense", "batch_norm", "activation", "dense"], producer)
            XCTAssertEqual(graph.nodes[0].operation, .input(shape: [784]))
            guard case .dense(let first) = graph.nodes[1].operation, case .dense(let last) = graph.nodes[7].operation,
                  case .batchNorm(let bn) = graph.nodes[2].operation else { return XCTFail() }
            XCTAssertEqual(first.kernel.shape, [784, 50])
            XCTAssertEqual(first.activation, .linear)
            XCTAssertEqual(last.activation, .softmax)
            XCTAssertEqual(bn.epsilon, 0.001)
            XCTAssertEqual(graph.nodes[3].operation, .activation(.sigmoid))
            XCTAssertEqual(graph.nodes.map(\.operation.parameterCount).reduce(0, +), 784 * 50 + 50 + 4 * 50 + 50 * 50 + 50 + 4 * 50 + 50 * 10 + 10)
        }
    }

    /// The four BN tensors have the same shape, so a wrong order would go
    /// unnoticed: compare each role with the dataset whose name says it.
    func testBatchNormRolesMatchStoredNames() throws {
        for producer in KerasReference.producers {
            let path = try KerasReference(producer: producer).modelPath
            let graph = try KerasModelReader.read(path: path).graph
            let root = try HDF5File.open(path).root()
            var checked = 0
            for node in graph.nodes {
                guard case .batchNorm = node.operation else { continue }
                let group = try root.group("model_weights/\(node.name)")
                let names = try group.stringArrayAttribute("weight_names")
                for (role, tensor) in node.operation.weights {
                    let name = try XCTUnwrap(names.first { $0.contains(role.rawValue) }, "\(role) in \(names)")
                    XCTAssertTrue(tensor.isBitIdentical(to: try Tensor(shape: [50], values: try group.dataset(name).readFloats())))
                    checked += 1
                }
                // Trained statistics are far from the initial (1, 0, 0, 1).
                guard case .batchNorm(let bn) = node.operation else { continue }
                XCTAssertNotEqual(bn.movingMean.values, [Float](repeating: 0, count: 50))
                XCTAssertNotEqual(bn.movingVariance.values, [Float](repeating: 1, count: 50))
            }
            XCTAssertEqual(checked, 8)
        }
    }

    func testFixedLengthAndChunkedStringAttributes() throws {
        let original = try KerasModelReader.read(path: try KerasReference(producer: "keras2").modelPath).graph
        let path = try copyOfFixture("keras2")
        do {
            let root = try HDF5File.open(path, writable: true).root()
            let config = try root.stringAttribute("model_config")
            try root.setFixedStringAttribute("model_config", [config], scalar: true)
            let weights = try root.group("model_weights")
            let layers = try weights.stringArrayAttribute("layer_names")
            try weights.deleteAttribute("layer_names")
            try weights.setFixedStringAttribute("layer_names0", Array(layers.prefix(3)))
            try weights.setFixedStringAttribute("layer_names1", Array(layers.dropFirst(3)))
            for layer in layers {
                let group = try weights.group(layer)
                let names = try group.stringArrayAttribute("weight_names")
                if !names.isEmpty { try group.setFixedStringAttribute("weight_names", names) }
            }
        }
        let reread = try KerasModelReader.read(path: path).graph
        XCTAssertEqual(reread, original)
    }

    func testMissingModelConfig() throws {
        let path = try copyOfFixture("keras3")
        try HDF5File.open(path, writable: true).root().deleteAttribute("model_config")
        expectError(path) { if case .missingModelConfig(_, weightsOnly: false) = $0 { true } else { false } }
        try HDF5File.open(path, writable: true).root().setStringArrayAttribute("layer_names", ["dense"])
        expectError(path) { if case .missingModelConfig(_, weightsOnly: true) = $0 { true } else { false } }
    }

    func testBatchNormWeightOfWrongShape() throws {
        for producer in KerasReference.producers {
            let path = try copyOfFixture(producer)
            do {
                let group = try HDF5File.open(path, writable: true).root().group("model_weights/batch_normalization")
                let gamma = try XCTUnwrap(try group.stringArrayAttribute("weight_names").first { $0.contains("gamma") })
                try group.deleteLink(gamma)
                try group.createFloatDataset(gamma, shape: [49], values: [Float](repeating: 1, count: 49))
            }
            expectError(path) { error in
                "\(error)".contains("'batch_normalization'") && "\(error)".contains("gamma") && "\(error)".contains("[49]")
            }
        }
    }

    func testMissingWeightDataset() throws {
        let path = try copyOfFixture("keras2")
        do {
            let group = try HDF5File.open(path, writable: true).root().group("model_weights/dense_1")
            try group.deleteLink(try group.stringArrayAttribute("weight_names")[1])
        }
        expectError(path) { "\($0)".contains("'dense_1'") && "\($0)".contains("not stored") }
    }

    func testUnsupportedLayerAndFeatureAreNamed() throws {
        let path = try copyOfFixture("keras3")
        let root = try HDF5File.open(path, writable: true).root()
        let config = try root.stringAttribute("model_config")
        try root.setStringAttribute("model_config", config.replacingOccurrences(of: "\"activation\": \"sigmoid\"", with: "\"activation\": \"mish\""))
        expectError(path) { "\($0)".contains("layer 'activation' (Activation): activation 'mish' is not supported") }
        try root.setStringAttribute("model_config", config.replacingOccurrences(of: "{\"class_name\": \"Activation\"", with: "{\"class_name\": \"PReLU\""))
        expectError(path) { "\($0)".contains("layer 'activation' of class 'PReLU' is not supported") }
        try root.setStringAttribute("model_config", config.replacingOccurrences(of: "{\"class_name\": \"Activation\"", with: "{\"class_name\": \"Lambda\""))
        expectError(path) { if case .unsupportedFeature(_, "activation", "Lambda", _) = $0 { true } else { false } }
        try root.setStringAttribute("model_config", "{not json")
        expectError(path) { if case .badConfig = $0 { true } else { false } }
    }

    /// What the new layers still do not support is refused with the layer, its class and the feature.
    func testUnsupportedOptionsOfTheArchitectureLayersAreNamed() throws {
        let cases: [(fixture: String, from: String, to: String, expected: [String])] = [
            ("inverted_hswish_keras2", "\"function\": \"math.multiply\"", "\"function\": \"math.reduce_logsumexp\"",
             ["(TFOpLambda)", "tf.math.reduce_logsumexp"]),
            ("unet_keras3", "\"output_padding\": null", "\"output_padding\": [1, 1]", ["(Conv2DTranspose)", "output_padding"]),
            ("convnext_block_keras3", "\"rms_scaling\": false", "\"rms_scaling\": true", ["(LayerNormalization)", "rms_scaling=True"]),
            ("unet_keras2", "\"interpolation\": \"bilinear\"", "\"interpolation\": \"bicubic\"", ["(UpSampling2D)", "interpolation 'bicubic'"]),
            ("cnn1d_keras3", "\"padding\": \"causal\"", "\"padding\": \"reflect\"", ["(Conv1D)", "padding 'reflect'"]),
        ]
        for t in cases {
            let copy = try temporaryFolder().appendingPathComponent("\(t.fixture).h5").path
            try FileManager.default.copyItem(atPath: TestPaths.fixture("architectures/\(t.fixture).h5"), toPath: copy)
            let root = try HDF5File.open(copy, writable: true).root()
            let config = try root.stringAttribute("model_config")
            XCTAssertTrue(config.contains(t.from), t.fixture)
            try root.setStringAttribute("model_config", config.replacingOccurrences(of: t.from, with: t.to))
            expectError(copy) { error in t.expected.allSatisfy { "\(error)".contains($0) } && "\(error)".contains("is not supported") }
        }
    }

    func testChannelsFirstIsRefusedClearly() throws {
        let copy = try temporaryFolder().appendingPathComponent("cnn.h5").path
        try FileManager.default.copyItem(atPath: TestPaths.fixture("small_cnn_keras3.h5"), toPath: copy)
        let root = try HDF5File.open(copy, writable: true).root()
        let config = try root.stringAttribute("model_config")
        try root.setStringAttribute("model_config", config.replacingOccurrences(of: "\"channels_last\"", with: "\"channels_first\""))
        expectError(copy) { "\($0)".contains("data_format 'channels_first'") && "\($0)".contains("(Conv2D)") }
    }

    func testTruncatedAndEmptyFiles() throws {
        let source = try Data(contentsOf: URL(fileURLWithPath: try KerasReference(producer: "keras2").modelPath))
        let folder = try temporaryFolder()
        for length in [0, 7, 100, 2048, source.count / 2, source.count - 1000] {
            let path = folder.appendingPathComponent("truncated-\(length).h5").path
            try source.prefix(length).write(to: URL(fileURLWithPath: path))
            expectError(path) { error in
                switch error {
                case .notHDF5, .hdf5, .badWeights, .missing: true
                default: false
                }
            }
        }
    }

    func testNoSuchFile() {
        expectError("/nonexistent/model.h5") { if case .unreadable = $0 { true } else { false } }
    }
}
