import Foundation
import ModelIR
import Runtime
import TestSupport
import XCTest

/// Each spatial kernel against the plain Double reference on random inputs:
/// strides, both paddings (including TensorFlow's uneven `same`), dilation,
/// groups, depth multipliers, odd sizes, several images per batch.
final class SpatialKernelTests: XCTestCase {
    private var random = SeededGenerator(seed: 42)

    private func check(_ graph: Graph, _ input: [Float], batch: Int, reference: ([Double]) -> [Double], line: UInt = #line) throws {
        let executor = try Executor(graph: graph)
        let output = try executor.run(input)
        let per = input.count / batch
        for b in 0..<batch {
            let expected = reference(input[(b * per)..<((b + 1) * per)].map(Double.init))
            XCTAssertEqual(expected.count, executor.outputSize, line: line)
            for (k, e) in expected.enumerated() {
                XCTAssertEqual(Double(output[b * executor.outputSize + k]), e, accuracy: 1e-4, "b\(b) k\(k)", line: line)
            }
        }
    }

    func testConv2DOverStridesPaddingsDilationsAndGroups() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, k: [Int], stride: [Int], dilation: [Int], same: Bool, groups: Int, bias: Bool)] = [
            (7, 9, 3, 5, [3, 3], [1, 1], [1, 1], false, 1, true),
            (7, 9, 3, 5, [3, 3], [1, 1], [1, 1], true, 1, false),
            (14, 14, 4, 6, [3, 3], [2, 2], [1, 1], true, 1, true),     // uneven: extra pixel bottom/right
            // stems: only the window rows reaching into the border copied (bottom and right; all four sides)
            (32, 30, 3, 24, [3, 3], [2, 2], [1, 1], true, 1, true),
            (30, 30, 3, 16, [7, 7], [2, 2], [1, 1], true, 1, true),
            (8, 7, 2, 4, [4, 2], [2, 3], [1, 1], true, 1, true),
            (11, 10, 3, 4, [3, 3], [1, 1], [2, 3], true, 1, true),
            (11, 10, 3, 4, [3, 2], [1, 1], [2, 2], false, 1, false),
            (9, 9, 6, 4, [3, 3], [1, 1], [1, 1], false, 2, true),
            (9, 9, 6, 6, [1, 1], [2, 2], [1, 1], true, 3, true),
            (5, 5, 1, 1, [5, 5], [1, 1], [1, 1], false, 1, true),
            // one input channel: the direct kernel (masks for 20 outputs, stride, dilation, padding)
            (13, 11, 1, 20, [3, 3], [2, 2], [1, 1], true, 1, true),
            (9, 9, 1, 16, [3, 3], [1, 1], [2, 2], true, 1, false),
            (10, 7, 1, 40, [2, 3], [1, 2], [1, 1], false, 1, true),
            (9, 13, 1, 28, [3, 3], [1, 1], [1, 1], true, 1, true),     // 16 + 12: a block of 16 with its second 8 masked
        ]
        for t in cases {
            let kernel = random.floats(t.k[0] * t.k[1] * (t.c / t.groups) * t.out, in: -1...1)
            let bias = t.bias ? random.floats(t.out, in: -1...1) : nil
            let conv = try Conv2D(kernel: Tensor(shape: t.k + [t.c / t.groups, t.out], values: kernel), bias: bias.map(Tensor.init),
                                  strides: t.stride, dilation: t.dilation, padding: t.same ? .same : .valid, groups: t.groups)
            let graph = try Graph.sequential(name: "c", inputShape: [t.h, t.w, t.c], layers: [("conv", .conv2d(conv))])
            let batch = 3
            try check(graph, random.floats(batch * t.h * t.w * t.c, in: -1...1), batch: batch) { x in
                ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: t.k[0], kw: t.k[1], out: t.out, bias: bias,
                                    stride: t.stride, dilation: t.dilation, same: t.same, groups: t.groups).values
            }
        }
    }

    /// A one-channel conv, its activation and a 2×2 stride-2 max pooling run as one
    /// fused step; the input has blank rows and blocks, which the kernel skips.
    func testOneChannelConvActivationMaxPoolFused() throws {
        let cases: [(h: Int, w: Int, out: Int, k: Int, stride: Int, dilation: Int, same: Bool, activation: Activation)] = [
            (28, 28, 16, 3, 1, 1, true, .relu),
            (13, 11, 20, 3, 1, 1, false, .relu6),  // odd conv output: the last row and column are dropped
            (17, 15, 33, 3, 2, 1, true, .linear),  // 33 outputs: three channel blocks, the last masked
            (12, 19, 5, 2, 1, 2, true, .relu),
            (14, 10, 12, 3, 1, 1, true, .relu),    // 12 outputs: one block of 16, the second 8 masked
        ]
        for t in cases {
            let kernel = random.floats(t.k * t.k * t.out, in: -1...1)
            let bias = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [t.k, t.k, 1, t.out], values: kernel), bias: Tensor(bias),
                                  strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: t.same ? .same : .valid)
            let pool = try Pool2D(kind: .max, size: [2, 2], strides: [2, 2], padding: .valid)
            let graph = try Graph.sequential(name: "cp", inputShape: [t.h, t.w, 1],
                                             layers: [("conv", .conv2d(conv)), ("act", .activation(t.activation)), ("pool", .pool2d(pool))])
            let batch = 3
            var input = random.floats(batch * t.h * t.w, in: -1...1)
            for i in input.indices where (i / t.w) % 5 < 2 || (i % t.w) < 3 { input[i] = 0 }  // blank rows and a blank left margin
            try check(graph, input, batch: batch) { x in
                let (y, oh, ow) = ReferenceOps.conv2d(x, h: t.h, w: t.w, c: 1, kernel: kernel, kh: t.k, kw: t.k, out: t.out, bias: bias,
                                                      stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: t.same, groups: 1)
                let activated = y.map { v -> Double in
                    switch t.activation {
                    case .relu: max(v, 0)
                    case .relu6: min(max(v, 0), 6)
                    default: v
                    }
                }
                return ReferenceOps.pool(activated, h: oh, w: ow, c: t.out, size: [2, 2], stride: [2, 2], same: false, isMax: true).values
            }
        }
    }

    /// 3×3 stride-1 convs with 8 or more channels and 100 or more output pixels (or 36 or more in
    /// whole 2×2 tiles) run by Winograd F(2×2, 3×3): odd and even sizes, both paddings, channel
    /// counts that are not multiples of 16, tiles from several images in one block, blocks as even
    /// as they go, with and without the fused pooling; other small maps by the direct conv.
    func testWinogradConvolutionsMatchTheDirectDefinition() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, same: Bool, activation: Activation, pool: Bool, winograd: Bool)] = [
            (28, 28, 32, 64, true, .relu, true, true),
            (14, 14, 64, 128, true, .relu, false, true),
            (12, 12, 128, 136, true, .relu, false, true), // a transformed kernel over 1 MiB: 180 tiles in two blocks of 90
            (11, 13, 8, 20, true, .linear, false, true),  // odd output: the last tiles are partly outside
            (13, 15, 13, 8, false, .relu6, false, true),  // valid padding: 11×13 output
            (11, 10, 9, 17, true, .relu, true, true),     // odd rows: the last conv row is dropped by the pooling
            (13, 13, 40, 12, false, .linear, true, true),
            (6, 6, 24, 40, true, .relu, false, true),     // 36 pixels in 9 whole tiles
            (8, 10, 16, 20, false, .linear, false, true), // 6×8 output, valid padding: 12 whole tiles
            (9, 9, 16, 24, true, .relu, false, true),     // 81 pixels, odd sides: 25 tiles, the last row and column half outside
            (9, 7, 8, 20, true, .linear, false, false),   // 63 pixels, odd sides: the direct conv
            (7, 7, 24, 40, true, .relu, false, false),    // 49 pixels, odd sides: the direct conv
            (4, 8, 16, 16, true, .linear, false, false),  // 32 pixels: the direct conv
            (5, 5, 40, 12, false, .linear, true, false),  // 3×3 output: the direct conv
        ]
        for t in cases {
            let kernel = random.floats(9 * t.c * t.out, in: -1...1)
            let bias = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, t.c, t.out], values: kernel), bias: Tensor(bias), padding: t.same ? .same : .valid)
            var layers: [(String, Op)] = [("conv", .conv2d(conv)), ("act", .activation(t.activation))]
            if t.pool { layers.append(("pool", .pool2d(try Pool2D(kind: .max, size: [2, 2], strides: [2, 2], padding: .valid)))) }
            let graph = try Graph.sequential(name: "w", inputShape: [t.h, t.w, t.c], layers: layers)
            XCTAssertEqual(try Executor(graph: graph).stepProfile.contains { $0.operation == "winograd" }, t.winograd, "\(t)")
            let batch = 5
            try check(graph, random.floats(batch * t.h * t.w * t.c, in: -1...1), batch: batch) { x in
                let (y, oh, ow) = ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: 3, kw: 3, out: t.out, bias: bias,
                                                      stride: [1, 1], dilation: [1, 1], same: t.same, groups: 1)
                let activated = y.map { v -> Double in
                    switch t.activation {
                    case .relu: max(v, 0)
                    case .relu6: min(max(v, 0), 6)
                    default: v
                    }
                }
                guard t.pool else { return activated }
                return ReferenceOps.pool(activated, h: oh, w: ow, c: t.out, size: [2, 2], stride: [2, 2], same: false, isMax: true).values
            }
        }
    }

    func testDepthwiseWithDepthMultipliers() throws {
        for (multiplier, stride, same, dilation) in [(1, 1, false, 1), (2, 2, true, 1), (3, 1, true, 2), (2, 3, false, 1)] {
            let (h, w, c) = (9, 8, 3)
            let kernel = random.floats(3 * 3 * c * multiplier, in: -1...1)
            let bias = random.floats(c * multiplier, in: -1...1)
            let conv = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, c, multiplier], values: kernel), bias: Tensor(bias),
                                           strides: [stride, stride], dilation: [dilation, dilation], padding: same ? .same : .valid)
            let graph = try Graph.sequential(name: "d", inputShape: [h, w, c], layers: [("dw", .depthwiseConv2d(conv))])
            try check(graph, random.floats(2 * h * w * c, in: -1...1), batch: 2) { x in
                ReferenceOps.depthwise(x, h: h, w: w, c: c, kernel: kernel, kh: 3, kw: 3, multiplier: multiplier, bias: bias,
                                       stride: [stride, stride], dilation: [dilation, dilation], same: same).values
            }
        }
    }

    /// Max and average pooling (the average over the taps inside the image), with channel counts
    /// that leave a partial vector at AVX-512 and AVX2 (44 = 2 × 16 + 12), span two blocks of 64
    /// (70) and three (130).
    func testPooling() throws {
        let cases: [(isMax: Bool, size: [Int], stride: [Int], same: Bool)] = [
            (true, [2, 2], [2, 2], false), (true, [3, 3], [2, 2], true), (false, [2, 2], [2, 2], true), (false, [3, 2], [1, 2], false),
            (false, [3, 3], [2, 2], true), (false, [3, 3], [1, 1], true), (true, [3, 3], [1, 1], true),
        ]
        for t in cases {
            for c in [2, 44, 70, 130] {
                let (h, w) = (7, 9)
                let pool = try Pool2D(kind: t.isMax ? .max : .average, size: t.size, strides: t.stride, padding: t.same ? .same : .valid)
                let graph = try Graph.sequential(name: "p", inputShape: [h, w, c], layers: [("pool", .pool2d(pool))])
                try check(graph, random.floats(2 * h * w * c, in: -1...1), batch: 2) { x in
                    ReferenceOps.pool(x, h: h, w: w, c: c, size: t.size, stride: t.stride, same: t.same, isMax: t.isMax).values
                }
            }
        }
    }

    /// Global pooling in blocks of 64 and 16 channels and the rest, the sums in registers: each
    /// channel's value is its pixels' float32 sum in order (then divided) or their maximum, bit
    /// for bit at every instruction-set level, and the same split by channels on two threads.
    func testGlobalPoolingBlocksExactAtEveryLevelAndSplit() throws {
        defer { Kernels.limitInstructionSet(2) }
        for c in [3, 16, 44, 64, 100, 150, 1152] {
            // 1100 pixels: 17 blocks of 64 and one of 12; 49: one block.
            let pixels = c >= 1000 ? 49 : 1100
            for kind in [Pool2D.Kind.max, .average] {
                let graph = try Graph.sequential(name: "g", inputShape: [pixels, 1, c], layers: [("gp", .globalPool(kind: kind, keepDims: false))])
                let executor = try Executor(graph: graph)
                let input = random.floats(2 * pixels * c, in: -3...3)
                var expected: [Float] = []
                for b in 0..<2 {
                    for ch in 0..<c {
                        // Each block's sum in pixel order, the blocks' sums in order from zero.
                        var acc: Float = kind == .max ? -.infinity : 0
                        for start in stride(from: 0, to: pixels, by: 64) {
                            var block: Float = kind == .max ? -.infinity : 0
                            for p in start..<min(start + 64, pixels) {
                                let v = input[(b * pixels + p) * c + ch]
                                block = kind == .max ? (v > block ? v : block) : block + v
                            }
                            acc = kind == .max ? (block > acc ? block : acc) : acc + block
                        }
                        expected.append(kind == .max ? acc : acc / Float(pixels))
                    }
                }
                for level in [2, 1, 0] {
                    Kernels.limitInstructionSet(level)
                    XCTAssertEqual(try executor.run(input).map(\.bitPattern), expected.map(\.bitPattern), "c \(c) \(kind) level \(level)")
                    // One image on two and three threads: the step itself split (a batch would go an image a worker).
                    for threads in [2, 3] {
                        XCTAssertEqual(try executor.run(Array(input[..<(pixels * c)]), threads: threads).map(\.bitPattern),
                                       expected[..<c].map(\.bitPattern), "c \(c) \(kind) level \(level), \(threads) threads")
                    }
                }
            }
        }
        XCTAssertTrue(Executor.sharesPixels(pixels: 112 * 112, channels: 32, batch: 1, workers: 2))
        XCTAssertTrue(Executor.sharesPixels(pixels: 1100, channels: 30, batch: 1, workers: 2))
        XCTAssertFalse(Executor.sharesPixels(pixels: 1100, channels: 29, batch: 1, workers: 2))   // under 128 KiB
        XCTAssertFalse(Executor.sharesPixels(pixels: 49, channels: 1152, batch: 1, workers: 2))   // one block
        XCTAssertFalse(Executor.sharesPixels(pixels: 112 * 112, channels: 32, batch: 1, workers: 1))
    }

    func testGlobalPoolingPaddingAndJoins() throws {
        let (h, w, c) = (3, 5, 4)
        for kind in [Pool2D.Kind.max, .average] {
            let graph = try Graph.sequential(name: "g", inputShape: [h, w, c], layers: [("gp", .globalPool(kind: kind, keepDims: false))])
            try check(graph, random.floats(2 * h * w * c, in: -1...1), batch: 2) { x in
                (0..<c).map { ch in
                    let values = (0..<(h * w)).map { x[$0 * c + ch] }
                    return kind == .max ? values.max()! : values.reduce(0, +) / Double(h * w)
                }
            }
        }
        let pad = try Graph.sequential(name: "z", inputShape: [2, 2, 1], layers: [("z", .zeroPadding2d([1, 0, 0, 2]))])
        XCTAssertEqual(try Executor(graph: pad).run([1, 2, 3, 4]), [0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0])
        let nodes = [
            Node(name: "in", operation: .input(shape: [2, 3]), inputs: []),
            Node(name: "a", operation: .activation(.relu), inputs: ["in"]),
            Node(name: "cat", operation: .concatenate(axis: 1), inputs: ["in", "a"]),
            Node(name: "cat0", operation: .concatenate(axis: 0), inputs: ["cat", "cat"]),
            Node(name: "sum", operation: .add, inputs: ["cat0", "cat0", "cat0"]),
            Node(name: "prod", operation: .multiply, inputs: ["sum", "cat0"]),
        ]
        let graph = try Graph(name: "j", nodes: nodes, outputs: ["prod"])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.outputShape, [4, 6])
        let x: [Float] = [1, -2, 3, -4, 5, -6]
        let cat: [Float] = [1, -2, 3, 1, 0, 3, -4, 5, -6, 0, 5, 0]
        XCTAssertEqual(try executor.run(x), (cat + cat).map { 3 * $0 * $0 })
    }
}
