import ModelIR
import XCTest

final class GraphTests: XCTestCase {
    func testTensorChecksItsSize() {
        XCTAssertThrowsError(try Tensor(shape: [2, 3], values: [1, 2]))
        XCTAssertThrowsError(try Tensor(shape: [-1, 2], values: []))
        XCTAssertNil(Tensor.elementCount([Int.max, 2]))
    }

    func testShapeInferenceAndConsumers() throws {
        let dense = try Dense(kernel: Tensor(shape: [6, 2], values: [Float](repeating: 0, count: 12)), bias: nil, activation: .relu)
        let graph = try Graph.sequential(name: "g", inputShape: [2, 3], layers: [("f", .flatten), ("d", .dense(dense))])
        XCTAssertEqual(try graph.inferShapes()["d"], [2])
        XCTAssertEqual(graph.consumers(of: "f"), ["d"])
        XCTAssertEqual(graph.nodes[2].operation.parameterCount, 12)
    }

    func testMalformedGraphsAreRefused() throws {
        XCTAssertThrowsError(try Graph(name: "g", nodes: [Node(name: "a", operation: .identity, inputs: ["b"])], outputs: ["a"]))
        XCTAssertThrowsError(try Graph(name: "g", nodes: [
            Node(name: "a", operation: .input(shape: [2]), inputs: []), Node(name: "a", operation: .identity, inputs: ["a"]),
        ], outputs: ["a"]))
        XCTAssertThrowsError(try Graph(name: "g", nodes: [Node(name: "a", operation: .input(shape: [2]), inputs: [])], outputs: ["zz"]))
        XCTAssertThrowsError(try BatchNorm(gamma: Tensor([1]), beta: nil, movingMean: Tensor([0, 0]), movingVariance: Tensor([1, 1]), epsilon: 1e-3))
    }
}
