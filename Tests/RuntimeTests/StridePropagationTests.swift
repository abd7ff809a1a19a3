import ModelIR
import Runtime
import TestSupport
import XCTest

/// A map read only by 1×1 convolutions of stride s (ResNet's stage transitions) is computed only
/// at the pixels they read: the stride moves up through the residual block to its windowed conv.
final class StridePropagationTests: XCTestCase {
    private var random = SeededGenerator(seed: 23)

    /// A residual block (conv k×k → ReLU → 1×1 conv, added to its input, ReLU) read by two strided
    /// 1×1 convs: the same outputs as the block computed in full (kept whole by observing its
    /// output), to float32 rounding, for windows whose `same` padding is uneven (4×4), dilated,
    /// depthwise, maps of odd sizes, strides that differ by axis.
    func testStridedReadersComputeOnlyTheirPixelsOfAResidualBlock() throws {
        let c = 6
        for (h, w, strides, kernel, dilation, depthwise) in [(10, 10, [2, 2], 3, 1, false), (9, 8, [2, 2], 4, 1, false),
                                                              (9, 11, [2, 3], 3, 2, false), (7, 7, [2, 2], 3, 1, true),
                                                              (12, 5, [3, 2], 5, 1, true)] {
            let label = "\(h)x\(w) strides \(strides) \(kernel)x\(kernel) dilation \(dilation)\(depthwise ? " depthwise" : "")"
            func conv(_ k: Int, _ cin: Int, _ cout: Int, strides: [Int] = [1, 1], dilation: [Int] = [1, 1]) throws -> Op {
                .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.5...0.5)),
                                   bias: Tensor(random.floats(cout, in: -0.5...0.5)), strides: strides, dilation: dilation, padding: .same))
            }
            let windowed: Op = depthwise
                ? .depthwiseConv2d(try DepthwiseConv2D(kernel: Tensor(shape: [kernel, kernel, c, 1], values: random.floats(kernel * kernel * c, in: -0.5...0.5)),
                                                       bias: Tensor(random.floats(c, in: -0.5...0.5)), dilation: [dilation, dilation], padding: .same))
                : try conv(kernel, c, c, dilation: [dilation, dilation])
            let nodes = [
                Node(name: "input", operation: .input(shape: [h, w, 3]), inputs: []),
                Node(name: "stem", operation: try conv(3, 3, c), inputs: ["input"]),
                Node(name: "stem_relu", operation: .activation(.relu), inputs: ["stem"]),
                Node(name: "block_1", operation: windowed, inputs: ["stem_relu"]),
                Node(name: "block_1_relu", operation: .activation(.relu), inputs: ["block_1"]),
                Node(name: "block_2", operation: try conv(1, c, c), inputs: ["block_1_relu"]),
                Node(name: "block_add", operation: .add, inputs: ["stem_relu", "block_2"]),
                Node(name: "block_out", operation: .activation(.relu), inputs: ["block_add"]),
                Node(name: "next_0", operation: try conv(1, c, 5, strides: strides), inputs: ["block_out"]),
                Node(name: "next_1", operation: try conv(1, c, 5, strides: strides), inputs: ["block_out"]),
                Node(name: "next_add", operation: .add, inputs: ["next_0", "next_1"]),
            ]
            let graph = try Graph(name: "r", nodes: nodes, outputs: ["next_add"])
            let strided = try Executor(graph: graph), whole = try Executor(graph: graph, observing: ["block_out"])
            XCTAssert(strided.stepProfile.contains { $0.layer == "stem_relu/strided" }, "\(label): the shortcut subsampled")
            XCTAssertFalse(whole.stepProfile.contains { $0.layer.hasSuffix("/strided") }, "\(label): an observed block is kept whole")
            XCTAssertEqual(strided.outputShape, [(h + strides[0] - 1) / strides[0], (w + strides[1] - 1) / strides[1], 5])
            let x = random.floats(2 * h * w * 3, in: -1...1)
            let expected = try whole.run(x), y = try strided.run(x)
            XCTAssertEqual(y.count, expected.count)
            for i in expected.indices {
                XCTAssertEqual(y[i], expected[i], accuracy: 1e-5 * (1 + abs(expected[i])), "\(label) [\(i)]")
            }
            XCTAssertEqual(try strided.run(x, threads: 2), y, "\(label): two threads")
        }
    }

    /// A block whose inside is also read at full resolution (an output here) keeps that node whole;
    /// readers of different strides, or a 1×1 conv of stride 1 among them, leave the map alone.
    func testMapsReadElsewhereOrAtOtherStridesStayWhole() throws {
        let c = 4
        func conv(_ k: Int, _ cin: Int, _ cout: Int, strides: [Int] = [1, 1]) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.5...0.5)),
                               bias: nil, strides: strides, padding: .same))
        }
        for second in [[1, 1], [2, 1]] {
            let nodes = [
                Node(name: "input", operation: .input(shape: [8, 8, c]), inputs: []),
                Node(name: "a", operation: try conv(3, c, c), inputs: ["input"]),
                Node(name: "a_relu", operation: .activation(.relu), inputs: ["a"]),
                Node(name: "p", operation: try conv(1, c, c, strides: [2, 2]), inputs: ["a_relu"]),
                Node(name: "q", operation: try conv(1, c, c, strides: second), inputs: ["a_relu"]),
                Node(name: "q_pool", operation: .globalPool(kind: .average, keepDims: false), inputs: ["q"]),
                Node(name: "p_pool", operation: .globalPool(kind: .average, keepDims: false), inputs: ["p"]),
                Node(name: "sum", operation: .add, inputs: ["p_pool", "q_pool"]),
            ]
            let executor = try Executor(graph: try Graph(name: "m", nodes: nodes, outputs: ["sum"]))
            XCTAssertFalse(executor.stepProfile.contains { $0.layer.hasSuffix("/strided") || $0.layer.hasSuffix("/padding") }, "\(second)")
        }
    }
}

/// A classifier head with large weights runs once over the whole batch after the tiles.
final class ClassifierHeadTests: XCTestCase {
    private var random = SeededGenerator(seed: 29)

    /// Tiles of 8 images (a 64×64×16 map) then a 1024 × 1024 softmax head (4 MB): a batch of 20 on
    /// one and two threads gives each image the outputs it has alone (bit for bit), and a head
    /// too small to stream (or reading a map) keeps running per tile.
    func testHeadOverTheWholeBatchEqualsImagesAlone() throws {
        func dense(_ inputs: Int, _ units: Int, _ activation: Activation) throws -> Op {
            .dense(try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -0.1...0.1)),
                             bias: Tensor(random.floats(units, in: -0.1...0.1)), activation: activation))
        }
        let conv = Op.conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, 4, 16], values: random.floats(3 * 3 * 4 * 16, in: -0.5...0.5)),
                                        bias: nil, padding: .same, activation: .relu))
        for (units, expectHead) in [(1024, true), (256, false)] {
            let graph = try Graph.sequential(name: "h", inputShape: [64, 64, 4], layers: [
                ("conv", conv), ("pool", .globalPool(kind: .average, keepDims: false)),
                ("hidden", try dense(16, units, .relu)), ("logits", try dense(units, 1024, .linear)), ("probabilities", .activation(.softmax)),
            ])
            let executor = try Executor(graph: graph)
            XCTAssertEqual(executor.headLayer, expectHead ? "hidden" : nil)
            XCTAssertLessThan(executor.samplesPerTile, 20)
            let batch = 20, x = random.floats(batch * 64 * 64 * 4, in: -1...1)
            var alone: [Float] = []
            for b in 0..<batch { alone += try executor.run(Array(x[(b * 64 * 64 * 4)..<((b + 1) * 64 * 64 * 4)])) }
            XCTAssertEqual(try executor.run(x), alone, "\(units): one thread")
            XCTAssertEqual(try executor.run(x, threads: 2), alone, "\(units): two threads")
            XCTAssertEqual(try executor.run(Array(x[0..<(9 * 64 * 64 * 4)]), threads: 3), Array(alone[0..<(9 * 1024)]), "\(units): three threads, 9")
        }
    }
}
