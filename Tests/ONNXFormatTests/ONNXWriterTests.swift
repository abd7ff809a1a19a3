import Foundation
import ModelIR
import ONNXFormat
import ONNXProto
import TestSupport
import XCTest

/// The structure of bnkit's ONNX files (their numbers are checked by tools/onnx_export_check.py,
/// which runs them in onnxruntime and OpenVINO against Keras).
final class ONNXWriterTests: XCTestCase {
    private var random = SeededGenerator(seed: 3)

    private func cnn() throws -> Graph {
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 2, 4], values: random.floats(72, in: -1...1)), bias: nil, padding: .same)
        let bn = try BatchNorm(gamma: nil, beta: Tensor(random.floats(4, in: -1...1)), movingMean: Tensor(random.floats(4, in: -1...1)),
                               movingVariance: Tensor(random.floats(4, in: 0.5...2)), epsilon: 1e-3)
        let dense = try Dense(kernel: Tensor(shape: [4, 3], values: random.floats(12, in: -1...1)), bias: nil, activation: .softmax)
        return try Graph.sequential(name: "cnn", inputShape: [6, 5, 2], layers: [
            ("conv", .conv2d(conv)), ("bn", .batchNorm(bn)), ("relu", .activation(.relu)),
            ("gap", .globalPool(kind: .average, keepDims: false)), ("dense", .dense(dense)),
        ])
    }

    func testOpsetInputLayoutDynamicBatchAndMetadata() throws {
        let data = try ONNXWriter.encode(try cnn(), metadata: ["producer": "test", "source": "cnn.h5"])
        let model = try Onnx_ModelProto(serializedBytes: data)
        XCTAssertEqual(model.opsetImport.first?.version, 17)
        XCTAssertEqual(model.opsetImport.first?.domain, "")
        XCTAssertEqual(model.irVersion, 8)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: model.metadataProps.map { ($0.key, $0.value) }), ["producer": "test", "source": "cnn.h5"])
        let input = try XCTUnwrap(model.graph.input.first)
        XCTAssertEqual(input.name, "input")
        let dims = input.type.tensorType.shape.dim
        XCTAssertEqual(dims.first?.dimParam, "N", "a dynamic batch dimension")
        XCTAssertEqual(dims.dropFirst().map(\.dimValue), [6, 5, 2], "Keras's channels-last layout at the input")
        XCTAssertEqual(model.graph.output.first?.type.tensorType.shape.dim.dropFirst().map(\.dimValue), [3])
        let ops = model.graph.node.map(\.opType)
        XCTAssertEqual(ops.first, "Transpose", "one transposition, at the input")
        XCTAssertTrue(ops.contains("BatchNormalization"), "\(ops)")
        // Every node's inputs are the graph input, an initializer or an earlier node's output.
        var known = Set([input.name] + model.graph.initializer.map(\.name) + [""])
        for node in model.graph.node {
            for name in node.input { XCTAssertTrue(known.contains(name), "\(node.name) reads \(name) before it exists") }
            known.formUnion(node.output)
        }
        XCTAssertTrue(known.contains(model.graph.output[0].name))
    }

    func testWhatONNXCannotSayIsRefusedWithTheLayer() throws {
        let ln = try LayerNorm(axes: [0, 2], epsilon: 1e-3, gamma: nil, beta: nil)
        let graph = try Graph.sequential(name: "ln", inputShape: [4, 3, 2], layers: [("norm", .layerNorm(ln))])
        XCTAssertThrowsError(try ONNXWriter.encode(graph)) { error in
            XCTAssertTrue("\(error)".contains("layer 'norm'") && "\(error)".contains("non-trailing axes"), "\(error)")
        }
        let relu = try Graph.sequential(name: "r", inputShape: [4], layers: [("odd", .activation(.clippedRelu(maxValue: nil, negativeSlope: 0.1, threshold: 0.5)))])
        XCTAssertThrowsError(try ONNXWriter.encode(relu)) { XCTAssertTrue("\($0)".contains("layer 'odd'"), "\($0)") }
    }
}
