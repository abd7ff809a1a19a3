import ModelIR
import Runtime
import TestSupport
import XCTest

/// A 1×1 conv on a small map with fewer images than threads is shared by pixels (its GEMM's rows)
/// in the workers' measured proportions, so a share may end inside an output row: the values are
/// one thread's bit for bit, with a residual Add fused and without, and the reference's.
final class PointwisePixelSplitTests: XCTestCase {
    private var random = SeededGenerator(seed: 43)

    func testSmallMapPointwiseConvSharedByPixelsInSkewedProportions() throws {
        // (side, input channels, output channels, a residual Add, the activation after)
        // (Enough multiply-adds, over 4 M, for one image's steps to be split.)
        let cases: [(Int, Int, Int, Bool, Activation)] = [(6, 512, 256, true, .relu), (7, 256, 512, false, .relu6),
                                                          (12, 128, 256, true, .hardSwish), (9, 256, 256, false, .linear)]
        for (side, c, out, residual, activation) in cases {
            let kernel = random.floats(c * out, in: -0.3...0.3), bias = random.floats(out, in: -0.1...0.1)
            let shortKernel = random.floats(c * out, in: -0.3...0.3)
            var nodes = [Node(name: "in", operation: .input(shape: [side, side, c]), inputs: [])]
            nodes.append(Node(name: "short", operation: .conv2d(try Conv2D(kernel: Tensor(shape: [1, 1, c, out], values: shortKernel),
                                                                            bias: nil, padding: .valid)), inputs: ["in"]))
            nodes.append(Node(name: "conv", operation: .conv2d(try Conv2D(kernel: Tensor(shape: [1, 1, c, out], values: kernel), bias: Tensor(bias),
                                                                           padding: .valid, activation: residual ? .linear : activation)), inputs: ["in"]))
            var output = "conv"
            if residual {
                nodes.append(Node(name: "sum", operation: .add, inputs: ["conv", "short"]))
                nodes.append(Node(name: "act", operation: .activation(activation), inputs: ["sum"]))
                output = "act"
            }
            let graph = try Graph(name: "pixels", nodes: nodes, outputs: [output])
            let executor = try Executor(graph: graph)
            XCTAssertTrue(executor.splitsSamples, "\(side)")
            if residual { XCTAssertFalse(executor.stepProfile.contains { $0.operation == "add" }, "the Add is fused (\(side))") }
            let input = random.floats(side * side * c, in: -1...1)
            let one = try executor.run(input, threads: 1)
            for shares in [[0.5, 0.5], [0.15, 0.85], [0.77, 0.23], [0.6, 0.1, 0.3], [0.2, 0.45, 0.35]] {
                let skewed = try Executor(graph: graph)
                skewed.setBalance(shares, threads: shares.count)
                let split = try skewed.run(input, threads: shares.count)
                XCTAssertEqual(split.count, one.count)
                XCTAssertEqual(zip(split, one).filter { $0.bitPattern != $1.bitPattern }.count, 0, "values differing: \(side), shares \(shares)")
            }
            // Two images on three threads (fewer images than threads: each step split, the two
            // images' pixels one GEMM): each image as it is alone.
            let second = random.floats(side * side * c, in: -1...1)
            let pair = try Executor(graph: graph)
            pair.setBalance([0.3, 0.5, 0.2], threads: 3)
            let both = try pair.run(input + second, threads: 3), alone = try executor.run(second, threads: 1)
            XCTAssertEqual(zip(both, one + alone).filter { $0.bitPattern != $1.bitPattern }.count, 0, "values differing: \(side), two images")
            // The reference: the 1×1 conv (plus the shortcut's) summed in Double, then the activation.
            let x = input.map(Double.init)
            let (y, _, _) = ReferenceOps.conv2d(x, h: side, w: side, c: c, kernel: kernel, kh: 1, kw: 1, out: out, bias: bias,
                                                stride: [1, 1], dilation: [1, 1], same: false, groups: 1)
            let (s, _, _) = ReferenceOps.conv2d(x, h: side, w: side, c: c, kernel: shortKernel, kh: 1, kw: 1, out: out,
                                                bias: [Float](repeating: 0, count: out), stride: [1, 1], dilation: [1, 1], same: false, groups: 1)
            XCTAssertEqual(one.count, y.count)
            for k in y.indices {
                let v = residual ? y[k] + s[k] : y[k]
                let expected: Double
                switch activation {
                case .relu: expected = max(v, 0)
                case .relu6: expected = min(max(v, 0), 6)
                case .hardSwish: expected = v * min(max(v + 3, 0), 6) / 6
                default: expected = v
                }
                XCTAssertEqual(Double(one[k]), expected, accuracy: 1e-5 * max(1, abs(expected)), "\(side) k\(k)")
            }
        }
    }
}
