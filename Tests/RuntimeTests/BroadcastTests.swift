import ModelIR
import Runtime
import TestSupport
import XCTest

/// Element-wise layers on inputs of different shapes (NumPy / Keras 3 broadcasting).
final class BroadcastTests: XCTestCase {
    /// A plain reference: every output element from its coordinates.
    private func reference(_ inputs: [[Float]], shapes: [[Int]], output: [Int], isAdd: Bool) -> [Float] {
        let count = output.reduce(1, *)
        return (0..<count).map { flat in
            var coordinate = [Int](repeating: 0, count: output.count), rest = flat
            for d in stride(from: output.count - 1, through: 0, by: -1) { coordinate[d] = rest % output[d]; rest /= output[d] }
            var result: Float = isAdd ? 0 : 1
            for (values, shape) in zip(inputs, shapes) {
                var index = 0
                for d in 0..<shape.count { index = index * shape[d] + (shape[d] == 1 ? 0 : coordinate[d]) }
                result = isAdd ? result + values[index] : result * values[index]
            }
            return result
        }
    }

    func testBroadcastShapes() throws {
        XCTAssertEqual(try Graph.broadcastShape([[48, 48, 32], [1, 1, 32]], node: "m"), [48, 48, 32])
        XCTAssertEqual(try Graph.broadcastShape([[5, 1, 3], [1, 4, 1], [5, 4, 3]], node: "m"), [5, 4, 3])
        XCTAssertThrowsError(try Graph.broadcastShape([[4, 3], [3]], node: "m")) { XCTAssertTrue("\($0)".contains("ranks")) }
        XCTAssertThrowsError(try Graph.broadcastShape([[4, 3], [2, 3]], node: "m")) { XCTAssertTrue("\($0)".contains("do not broadcast")) }
    }

    /// Squeeze-and-excitation (H,W,C)·(1,1,C), per-pixel scalars (H,W,C)+(H,W,1), stretched rows and
    /// columns, three inputs, 1-D; batches of several samples, 1 and 2 threads.
    func testBroadcastAgainstReference() throws {
        var random = SeededGenerator(seed: 21)
        let cases: [[[Int]]] = [
            [[6, 5, 8], [1, 1, 8]], [[1, 1, 8], [6, 5, 8]], [[6, 5, 3], [6, 5, 1]], [[4, 1, 3], [1, 7, 1]],
            [[3, 4, 2], [1, 4, 2], [3, 1, 1]], [[9], [1]], [[2, 3], [2, 3]],
        ]
        for shapes in cases {
            let output = try Graph.broadcastShape(shapes, node: "m")
            for isAdd in [true, false] {
                var nodes = shapes.enumerated().map { i, _ in Node(name: "x\(i)", operation: .identity, inputs: ["in"]) }
                // One input reshaped to each shape: a Dense from the graph input gives each operand.
                let inputWidth = 4
                nodes = [Node(name: "in", operation: .input(shape: [inputWidth]), inputs: [])]
                var operandNames: [String] = []
                for (i, shape) in shapes.enumerated() {
                    let size = shape.reduce(1, *)
                    let dense = try Dense(kernel: Tensor(shape: [inputWidth, size], values: random.floats(inputWidth * size, in: -1...1)),
                                          bias: Tensor(random.floats(size, in: -1...1)), activation: .linear)
                    nodes.append(Node(name: "d\(i)", operation: .dense(dense), inputs: ["in"]))
                    nodes.append(Node(name: "r\(i)", operation: .reshape(shape), inputs: ["d\(i)"]))
                    operandNames.append("r\(i)")
                }
                nodes.append(Node(name: "m", operation: isAdd ? .add : .multiply, inputs: operandNames))
                let graph = try Graph(name: "b", nodes: nodes, outputs: ["m"])
                let batch = 3
                let x = random.floats(batch * inputWidth, in: -1...1)
                // The operands, computed by the executor itself (Dense is tested elsewhere).
                var operands: [[Float]] = []
                for name in operandNames {
                    let sub = try Graph(name: "o", nodes: nodes.filter { ["in", name, "d" + name.dropFirst()].contains($0.name) }, outputs: [name])
                    operands.append(try Executor(graph: sub).run(x))
                }
                for threads in [1, 2] {
                    let y = try Executor(graph: graph).run(x, threads: threads)
                    let per = output.reduce(1, *)
                    for b in 0..<batch {
                        let expected = reference(zip(operands, shapes).map { values, shape in
                            let n = shape.reduce(1, *); return Array(values[(b * n)..<((b + 1) * n)])
                        }, shapes: shapes, output: output, isAdd: isAdd)
                        XCTAssertEqual(Array(y[(b * per)..<((b + 1) * per)]), expected, "\(shapes) \(isAdd ? "add" : "multiply") sample \(b)")
                    }
                }
            }
        }
    }
}
