import Foundation
import ModelIR
import Runtime
import TestSupport
import XCTest

/// The kernels of the larger architectures' layers against plain Double references on
/// random shapes: separable and 1-D convolutions (strides, both paddings, causal, dilation,
/// depth multipliers, groups), transposed convolutions, layer normalization over any axis
/// set, nearest and bilinear upsampling, cropping, 1-D pooling, the broadcast merges,
/// hard-swish and Dense on the last axis. InstructionSetTests runs them at every level.
final class ArchitectureKernelTests: XCTestCase {
    private var random = SeededGenerator(seed: 77)

    private func check(_ graph: Graph, batch: Int, tolerance: Double = 1e-4, line: UInt = #line,
                       reference: ([Double]) -> [Double]) throws {
        let executor = try Executor(graph: graph)
        let input = random.floats(batch * executor.inputSize, in: -2...2)
        for threads in [1, 2] {
            let output = try executor.run(input, threads: threads)
            for b in 0..<batch {
                let expected = reference(input[(b * executor.inputSize)..<((b + 1) * executor.inputSize)].map(Double.init))
                XCTAssertEqual(expected.count, executor.outputSize, line: line)
                for (k, e) in expected.enumerated() {
                    let got = Double(output[b * executor.outputSize + k])
                    XCTAssertEqual(got, e, accuracy: tolerance * max(1, abs(e)), "b\(b) k\(k) threads \(threads)", line: line)
                    if abs(got - e) > tolerance * max(1, abs(e)) { return }
                }
            }
        }
    }

    /// 1-D convolution reference over (steps, channels); causal pads (k−1)·d before.
    private func conv1d(_ x: [Double], steps: Int, c: Int, kernel: [Float], k: Int, out: Int, groups: Int, bias: [Float]?,
                        stride: Int, dilation: Int, padding: Padding) -> [Double] {
        let effective = (k - 1) * dilation + 1
        let (length, before): (Int, Int) = switch padding {
        case .valid: ((steps - effective) / stride + 1, 0)
        case .same: ReferenceOps.tfPadding(input: steps, kernel: k, stride: stride, dilation: dilation, same: true)
        case .causal: ((steps + stride - 1) / stride, effective - 1)
        }
        let cpg = c / groups, opg = out / groups
        var y = [Double](repeating: 0, count: length * out)
        for t in 0..<length { for o in 0..<out {
            var sum = Double(bias?[o] ?? 0)
            let g = o / opg
            for tap in 0..<k {
                let i = t * stride - before + tap * dilation
                guard i >= 0, i < steps else { continue }
                for j in 0..<cpg { sum += x[i * c + g * cpg + j] * Double(kernel[(tap * cpg + j) * out + o]) }
            }
            y[t * out + o] = sum
        } }
        return y
    }

    func testConv1DOverPaddingsStridesDilationsAndGroups() throws {
        let cases: [(steps: Int, c: Int, out: Int, k: Int, stride: Int, dilation: Int, padding: Padding, groups: Int)] = [
            (17, 3, 5, 3, 1, 1, .valid, 1), (17, 3, 5, 3, 1, 1, .same, 1), (16, 4, 6, 5, 2, 1, .same, 1),
            (20, 2, 3, 3, 1, 2, .causal, 1), (21, 4, 4, 4, 3, 1, .causal, 1), (15, 6, 9, 3, 1, 1, .same, 3),
            (12, 4, 8, 3, 1, 1, .valid, 4), (9, 1, 7, 1, 1, 1, .valid, 1),
        ]
        for t in cases {
            let kernel = random.floats(t.k * (t.c / t.groups) * t.out, in: -1...1), bias = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [t.k, t.c / t.groups, t.out], values: kernel), bias: Tensor(bias),
                                  strides: [1, t.stride], dilation: [1, t.dilation], padding: t.padding, groups: t.groups)
            let graph = try Graph.sequential(name: "c1", inputShape: [t.steps, t.c], layers: [("conv", .conv2d(conv))])
            try check(graph, batch: 3) { x in
                conv1d(x, steps: t.steps, c: t.c, kernel: kernel, k: t.k, out: t.out, groups: t.groups, bias: bias,
                       stride: t.stride, dilation: t.dilation, padding: t.padding)
            }
        }
    }

    /// Separable = depthwise (no bias) then pointwise with bias; 2-D and 1-D, with a depth multiplier;
    /// depthwise outputs over 512 KiB a image with a small pointwise kernel, run a few output rows
    /// at a time (36 rows of 75 × 24 floats, then the last 3 or 4; strided and padded too); small
    /// maps with many outputs: 16×16 split by rows on two threads, and a 5×10 output (a partial
    /// panel) and a one-row map (whose depthwise rows are not split) with fewer than three rows a
    /// thread, whose pointwise columns two threads share.
    func testSeparableConvolutions() throws {
        let cases: [(h: Int, w: Int, c: Int, m: Int, out: Int, k: [Int], stride: [Int], dilation: [Int], same: Bool)] = [
            (9, 8, 3, 1, 5, [3, 3], [1, 1], [1, 1], true), (10, 11, 4, 2, 6, [3, 3], [2, 2], [1, 1], true),
            (7, 7, 5, 1, 3, [5, 5], [1, 1], [1, 1], false), (12, 9, 2, 3, 4, [3, 3], [1, 1], [2, 2], true),
            (75, 75, 24, 1, 16, [3, 3], [1, 1], [1, 1], true), (151, 150, 12, 2, 8, [3, 3], [2, 2], [1, 1], true),
            (16, 16, 128, 1, 96, [3, 3], [1, 1], [1, 1], true), (10, 20, 96, 2, 200, [3, 3], [2, 2], [1, 1], true),
            (3, 120, 100, 1, 80, [3, 3], [2, 2], [1, 1], false),
        ]
        for t in cases {
            let depthwise = random.floats(t.k[0] * t.k[1] * t.c * t.m, in: -1...1)
            let pointwise = random.floats(t.c * t.m * t.out, in: -1...1), bias = random.floats(t.out, in: -1...1)
            let conv = try SeparableConv2D(depthwiseKernel: Tensor(shape: t.k + [t.c, t.m], values: depthwise),
                                           pointwiseKernel: Tensor(shape: [1, 1, t.c * t.m, t.out], values: pointwise), bias: Tensor(bias),
                                           strides: t.stride, dilation: t.dilation, padding: t.same ? .same : .valid, activation: .relu)
            let graph = try Graph.sequential(name: "s", inputShape: [t.h, t.w, t.c], layers: [("sep", .separableConv2d(conv))])
            // One image, so that two threads split the step (a batch of two goes an image a thread).
            try check(graph, batch: t.out >= 64 ? 1 : 2) { x in
                let (d, oh, ow) = ReferenceOps.depthwise(x, h: t.h, w: t.w, c: t.c, kernel: depthwise, kh: t.k[0], kw: t.k[1], multiplier: t.m,
                                                         bias: nil, stride: t.stride, dilation: t.dilation, same: t.same)
                return ReferenceOps.conv2d(d, h: oh, w: ow, c: t.c * t.m, kernel: pointwise, kh: 1, kw: 1, out: t.out, bias: bias,
                                           stride: [1, 1], dilation: [1, 1], same: false, groups: 1).values.map { max($0, 0) }
            }
        }
        // 1-D: (steps, channels), kernels (k, c, m) and (1, c·m, out).
        let depthwise = random.floats(3 * 4 * 2, in: -1...1), pointwise = random.floats(8 * 5, in: -1...1)
        let conv = try SeparableConv2D(depthwiseKernel: Tensor(shape: [3, 4, 2], values: depthwise),
                                       pointwiseKernel: Tensor(shape: [1, 8, 5], values: pointwise), bias: nil,
                                       strides: [1, 2], padding: .same)
        let graph = try Graph.sequential(name: "s1", inputShape: [13, 4], layers: [("sep", .separableConv2d(conv))])
        try check(graph, batch: 3) { x in
            let (d, _, ow) = ReferenceOps.depthwise(x, h: 1, w: 13, c: 4, kernel: depthwise, kh: 1, kw: 3, multiplier: 2,
                                                    bias: nil, stride: [1, 2], dilation: [1, 1], same: true)
            return ReferenceOps.conv2d(d, h: 1, w: ow, c: 8, kernel: pointwise, kh: 1, kw: 1, out: 5, bias: nil,
                                       stride: [1, 1], dilation: [1, 1], same: false, groups: 1).values
        }
    }

    /// Grouped convs with several input channels per group (ResNeXt's 4 to 32, RegNet's 8, and
    /// widths whose last vector is partial: 12, 40, 72; groups of 4 outputs in pairs, with 4 or 8
    /// inputs, and alone: an odd number of groups, 2 inputs), strides, dilation, both paddings, fused
    /// and separate activations, on one and two threads (the last case is split by rows); rows
    /// under 6 pixels, which go as an indirect GEMM.
    func testGroupedConvolutionsOverGroupWidths() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, groups: Int, k: [Int], stride: Int, dilation: Int, same: Bool, activation: Activation, batch: Int)] = [
            (9, 13, 16, 16, 4, [3, 3], 1, 1, true, .relu, 2),
            (8, 11, 32, 16, 4, [3, 3], 2, 1, true, .linear, 2),
            (7, 9, 6, 12, 3, [3, 3], 1, 1, true, .relu6, 2),
            (8, 14, 16, 16, 2, [3, 3], 2, 1, true, .linear, 2),
            (7, 11, 24, 24, 2, [3, 3], 1, 2, false, .relu6, 2),
            (10, 12, 32, 32, 2, [3, 3], 1, 1, true, .sigmoid, 2),
            (6, 9, 64, 64, 2, [3, 3], 1, 1, true, .relu, 2),
            (5, 7, 80, 80, 2, [3, 3], 2, 1, true, .linear, 2),
            (5, 6, 128, 128, 2, [1, 1], 1, 1, false, .linear, 1),
            (6, 5, 36, 144, 2, [3, 2], 1, 1, true, .relu, 2),
            (28, 28, 64, 64, 8, [3, 3], 1, 1, true, .relu, 1),
            // Rows under 6 pixels (the indirect GEMM): groups of 16 in chunks of images (3 × 3 × 32
            // leaves room for 4 images' pointers a chunk), of 48 and 80 (past one 64-column block),
            // of 8 and 24 (AVX2's 16 columns at a time), stride 2, dilation, valid padding.
            (3, 3, 32, 32, 2, [3, 3], 1, 1, true, .relu, 10),
            (4, 5, 96, 96, 2, [3, 3], 1, 1, true, .relu6, 3),
            (3, 4, 160, 160, 2, [3, 3], 1, 1, true, .linear, 2),
            (5, 5, 48, 48, 3, [3, 3], 2, 1, false, .relu, 3),
            (5, 5, 64, 64, 8, [3, 3], 1, 2, false, .relu, 2),
            (6, 6, 72, 72, 3, [3, 3], 2, 1, true, .sigmoid, 2),
        ]
        for t in cases {
            let perGroup = t.c / t.groups
            let kernel = random.floats(t.k[0] * t.k[1] * perGroup * t.out, in: -1...1), bias = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: t.k + [perGroup, t.out], values: kernel), bias: Tensor(bias),
                                  strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: t.same ? .same : .valid,
                                  groups: t.groups, activation: t.activation)
            let graph = try Graph.sequential(name: "g", inputShape: [t.h, t.w, t.c], layers: [("conv", .conv2d(conv))])
            try check(graph, batch: t.batch) { x in
                ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: t.k[0], kw: t.k[1], out: t.out, bias: bias,
                                    stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: t.same, groups: t.groups).values.map { v in
                    switch t.activation {
                    case .relu: max(v, 0)
                    case .relu6: min(max(v, 0), 6)
                    case .sigmoid: 1 / (1 + Foundation.exp(-v))
                    default: v
                    }
                }
            }
        }
    }

    /// Grouped convs on small maps with many groups, which two threads share by groups at batch 1
    /// (the rule asserted; maps of 32K floats or more, so the sample's steps are split): groups of
    /// 32, 16 and 24 outputs, groups of 4 in pairs (even bounds), an odd number of groups, and
    /// activations applied after the kernel (sigmoid, swish) over each worker's channels only.
    /// Against the reference, and one thread's output equal to two threads'.
    func testGroupedConvolutionsSharedByGroups() throws {
        let cases: [(h: Int, w: Int, c: Int, groups: Int, stride: Int, activation: Activation, batch: Int)] = [
            (3, 3, 4096, 128, 1, .relu, 1),
            (3, 3, 4096, 1024, 1, .linear, 1),
            (4, 4, 2200, 275, 2, .sigmoid, 1),
            (6, 6, 1024, 64, 1, .swish, 1),
            (3, 5, 2400, 100, 1, .relu6, 1),
        ]
        for t in cases {
            let perGroup = t.c / t.groups
            let kernel = random.floats(9 * perGroup * t.c, in: -1...1), bias = random.floats(t.c, in: -1...1)
            XCTAssertTrue(Executor.sharesGroups(groups: t.groups, weightFloats: 9 * perGroup * t.c, inputFloats: t.batch * t.h * t.w * t.c,
                                                elementwise: t.activation != .softmax, workers: 2), "\(t)")
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, perGroup, t.c], values: kernel), bias: Tensor(bias),
                                  strides: [t.stride, t.stride], padding: .same, groups: t.groups, activation: t.activation)
            let graph = try Graph.sequential(name: "g", inputShape: [t.h, t.w, t.c], layers: [("conv", .conv2d(conv))])
            try check(graph, batch: t.batch) { x in
                ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: 3, kw: 3, out: t.c, bias: bias,
                                    stride: [t.stride, t.stride], dilation: [1, 1], same: true, groups: t.groups).values.map { v in
                    switch t.activation {
                    case .relu: max(v, 0)
                    case .relu6: min(max(v, 0), 6)
                    case .sigmoid: 1 / (1 + Foundation.exp(-v))
                    case .swish: v / (1 + Foundation.exp(-v))
                    default: v
                    }
                }
            }
            let executor = try Executor(graph: graph)
            XCTAssertTrue(executor.splitsSamples)
            let input = random.floats(t.batch * executor.inputSize, in: -2...2)
            let one = try executor.run(input, threads: 1), two = try executor.run(input, threads: 2)
            XCTAssertTrue(one == two, "one and two threads differ: \(t)")
        }
        // Larger maps with few weights stay split by rows.
        XCTAssertFalse(Executor.sharesGroups(groups: 32, weightFloats: 9 * 8 * 256, inputFloats: 12 * 12 * 256, elementwise: true, workers: 2))
        XCTAssertFalse(Executor.sharesGroups(groups: 32, weightFloats: 9 * 32 * 1024, inputFloats: 9 * 1024, elementwise: true, workers: 1))
    }

    /// Depthwise 1-D and grouped convs with one input channel per group (run as depthwise).
    func testDepthwise1DAndOneChannelGroups() throws {
        let kernel = random.floats(5 * 6 * 2, in: -1...1), bias = random.floats(12, in: -1...1)
        let depthwise = try DepthwiseConv2D(kernel: Tensor(shape: [5, 6, 2], values: kernel), bias: Tensor(bias),
                                            strides: [1, 1], padding: .causal, activation: .linear)
        let graph = try Graph.sequential(name: "d1", inputShape: [11, 6], layers: [("dw", .depthwiseConv2d(depthwise))])
        try check(graph, batch: 2) { x in
            // The depthwise output channel c·m + j is a grouped conv with 6 groups of one input, two outputs.
            var grouped = [Float](repeating: 0, count: 5 * 12)
            for tap in 0..<5 { for ch in 0..<6 { for j in 0..<2 { grouped[tap * 12 + ch * 2 + j] = kernel[(tap * 6 + ch) * 2 + j] } } }
            return conv1d(x, steps: 11, c: 6, kernel: grouped, k: 5, out: 12, groups: 6, bias: bias, stride: 1, dilation: 1, padding: .causal)
        }
        // Wide depthwise layers: full blocks of 64 channels and a tail, strides, dilation, both paddings.
        for (c, k, stride, dilation, same) in [(80, 3, 2, 1, true), (131, 5, 1, 2, true), (64, 3, 1, 1, false), (200, 3, 2, 1, false)] {
            let weights = random.floats(k * k * c, in: -1...1), b = random.floats(c, in: -1...1)
            let conv = try DepthwiseConv2D(kernel: Tensor(shape: [k, k, c, 1], values: weights), bias: Tensor(b), strides: [stride, stride],
                                           dilation: [dilation, dilation], padding: same ? .same : .valid)
            let g = try Graph.sequential(name: "w", inputShape: [9, 8, c], layers: [("dw", .depthwiseConv2d(conv))])
            try check(g, batch: 2) { x in
                ReferenceOps.depthwise(x, h: 9, w: 8, c: c, kernel: weights, kh: k, kw: k, multiplier: 1, bias: b,
                                       stride: [stride, stride], dilation: [dilation, dilation], same: same).values
            }
        }
        // ConvNeXt's 7×7 conv with groups = channels, and a multiplier of 2.
        for (c, out) in [(8, 8), (4, 8)] {
            let weights = random.floats(7 * 7 * out, in: -1...1), b = random.floats(out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [7, 7, 1, out], values: weights), bias: Tensor(b), padding: .same, groups: c)
            let g = try Graph.sequential(name: "g", inputShape: [9, 10, c], layers: [("conv", .conv2d(conv))])
            try check(g, batch: 2) { x in
                ReferenceOps.conv2d(x, h: 9, w: 10, c: c, kernel: weights, kh: 7, kw: 7, out: out, bias: b,
                                    stride: [1, 1], dilation: [1, 1], same: true, groups: c).values
            }
        }
    }

    /// The transposed convolution from its definition: every input pixel scatters kernel · x. Those
    /// of stride 1 (odd and even kernels, both paddings, a map large enough for Winograd) run as
    /// plain convolutions of the turned kernel (GraphRewrites.transposedConvsAsConvs).
    func testTransposedConvolutions() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, k: [Int], stride: [Int], same: Bool)] = [
            (5, 6, 3, 4, [3, 3], [2, 2], true), (5, 6, 3, 4, [3, 3], [2, 2], false), (4, 4, 2, 3, [2, 2], [2, 2], true),
            (3, 5, 4, 2, [4, 3], [1, 2], true), (6, 3, 2, 5, [3, 1], [3, 1], false), (4, 5, 3, 2, [1, 1], [2, 2], false),
            (5, 6, 3, 4, [3, 3], [1, 1], true), (5, 6, 3, 4, [3, 3], [1, 1], false), (4, 5, 2, 3, [2, 2], [1, 1], true),
            (4, 5, 2, 3, [2, 4], [1, 1], false), (3, 4, 5, 2, [4, 3], [1, 1], true), (4, 4, 3, 2, [1, 1], [1, 1], true),
            (14, 13, 24, 40, [3, 3], [1, 1], true), (20, 18, 16, 24, [3, 3], [2, 2], false),
        ]
        for t in cases {
            let kernel = random.floats(t.k[0] * t.k[1] * t.out * t.c, in: -1...1), bias = random.floats(t.out, in: -1...1)
            let conv = try Conv2DTranspose(kernel: Tensor(shape: t.k + [t.out, t.c], values: kernel), bias: Tensor(bias), strides: t.stride,
                                           padding: t.same ? .same : .valid)
            let graph = try Graph.sequential(name: "t", inputShape: [t.h, t.w, t.c], layers: [("up", .conv2dTranspose(conv))])
            // Keras: same → in·s; valid → in·s + max(k − s, 0); padding removed before: max(k − s, 0) / 2 (same).
            let oh = t.same ? t.h * t.stride[0] : t.h * t.stride[0] + max(t.k[0] - t.stride[0], 0)
            let ow = t.same ? t.w * t.stride[1] : t.w * t.stride[1] + max(t.k[1] - t.stride[1], 0)
            let pt = t.same ? max(t.k[0] - t.stride[0], 0) / 2 : 0, pl = t.same ? max(t.k[1] - t.stride[1], 0) / 2 : 0
            XCTAssertEqual(try graph.inferShapes()["up"], [oh, ow, t.out])
            let operations = try Executor(graph: graph).stepProfile.map(\.operation)
            XCTAssertEqual(operations.contains("transposedConv"), t.stride != [1, 1], "\(t): \(operations)")
            try check(graph, batch: 2) { x in
                var y = [Double](repeating: 0, count: oh * ow * t.out)
                for p in 0..<(oh * ow) { for o in 0..<t.out { y[p * t.out + o] = Double(bias[o]) } }
                for iy in 0..<t.h { for ix in 0..<t.w { for ky in 0..<t.k[0] { for kx in 0..<t.k[1] {
                    let oy = iy * t.stride[0] + ky - pt, ox = ix * t.stride[1] + kx - pl
                    guard oy >= 0, oy < oh, ox >= 0, ox < ow else { continue }
                    for o in 0..<t.out { for i in 0..<t.c {
                        y[(oy * ow + ox) * t.out + o] += x[(iy * t.w + ix) * t.c + i] * Double(kernel[((ky * t.k[1] + kx) * t.out + o) * t.c + i])
                    } }
                } } } }
                return y
            }
        }
    }

    /// Layer normalization over trailing, full, leading and non-contiguous axis sets.
    func testLayerNormalizationOverAxisSets() throws {
        let cases: [(shape: [Int], axes: [Int], gamma: Bool, beta: Bool)] = [
            ([5, 4, 6], [2], true, true), ([5, 4, 6], [1, 2], true, false), ([5, 4, 6], [0, 1, 2], false, true),
            ([5, 4, 6], [0], true, true), ([5, 4, 6], [0, 2], true, true), ([7], [0], true, true), ([3, 8], [1], false, false),
            ([2, 3, 77], [2], true, true),  // long rows: the vector lanes and a tail
        ]
        for t in cases {
            let parameterShape = t.axes.map { t.shape[$0] }, count = parameterShape.reduce(1, *)
            let gamma = random.floats(count, in: 0.5...1.5), beta = random.floats(count, in: -1...1)
            let ln = try LayerNorm(axes: t.axes, epsilon: 1e-3, gamma: t.gamma ? Tensor(shape: parameterShape, values: gamma) : nil,
                                   beta: t.beta ? Tensor(shape: parameterShape, values: beta) : nil)
            let graph = try Graph.sequential(name: "ln", inputShape: t.shape, layers: [("ln", .layerNorm(ln))])
            try check(graph, batch: 3) { x in
                let size = t.shape.reduce(1, *)
                func coordinates(_ e: Int) -> [Int] {
                    var rest = e, c = [Int](repeating: 0, count: t.shape.count)
                    for d in stride(from: t.shape.count - 1, through: 0, by: -1) { c[d] = rest % t.shape[d]; rest /= t.shape[d] }
                    return c
                }
                func key(_ c: [Int], normalized: Bool) -> Int {
                    (0..<t.shape.count).filter { t.axes.contains($0) == normalized }.reduce(0) { $0 * t.shape[$1] + c[$1] }
                }
                var groups: [Int: [Int]] = [:]
                for e in 0..<size { groups[key(coordinates(e), normalized: false), default: []].append(e) }
                var y = [Double](repeating: 0, count: size)
                for members in groups.values {
                    let mean = members.map { x[$0] }.reduce(0, +) / Double(members.count)
                    let variance = members.map { (x[$0] - mean) * (x[$0] - mean) }.reduce(0, +) / Double(members.count)
                    for e in members {
                        let p = key(coordinates(e), normalized: true)
                        y[e] = (x[e] - mean) / (variance + 1e-3).squareRoot() * (t.gamma ? Double(gamma[p]) : 1) + (t.beta ? Double(beta[p]) : 0)
                    }
                }
                return y
            }
        }
    }

    /// A trailing-axis layer norm over a map large enough to split (ConvNeXt's) runs by rows on
    /// several threads: one thread's values bit for bit, at any shares.
    func testLayerNormalizationSplitByRowsEqualsOneThread() throws {
        let (h, w, c) = (19, 19, 96)  // 34,656 floats an image: one image's steps are split (Executor.smallestSplitSample)
        let ln = try LayerNorm(axes: [2], epsilon: 1e-6, gamma: Tensor(random.floats(c, in: 0.5...1.5)), beta: Tensor(random.floats(c, in: -1...1)))
        let graph = try Graph.sequential(name: "ln", inputShape: [h, w, c], layers: [("ln", .layerNorm(ln))])
        for batch in [1, 2] {
            let input = random.floats(batch * h * w * c, in: -4...4)
            let one = try Executor(graph: graph).run(input, threads: 1)
            for threads in [2, 3] {
                XCTAssertTrue(try Executor(graph: graph).run(input, threads: threads).map(\.bitPattern) == one.map(\.bitPattern),
                               "batch \(batch), \(threads) threads")
            }
            for shares in [[0.1, 0.9], [0.75, 0.25]] {
                let skewed = try Executor(graph: graph)
                skewed.setBalance(shares, threads: shares.count)
                XCTAssertTrue(try skewed.run(input, threads: shares.count).map(\.bitPattern) == one.map(\.bitPattern), "shares \(shares)")
            }
        }
    }

    /// Convs to a few output channels (a segmentation head: 3×3 or 1×1 to a handful of classes) run
    /// as direct dot products over input channels (`bnk_conv2d_few_outputs`): one to four outputs,
    /// channels in whole vectors and with a tail, strides, dilations, both paddings, a softmax over
    /// the classes; a map large enough that two threads share it by rows.
    func testConvolutionsToFewOutputChannels() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, k: Int, stride: Int, dilation: Int, same: Bool, softmax: Bool)] = [
            (9, 8, 16, 1, 3, 1, 1, true, false), (9, 8, 37, 2, 3, 2, 1, true, false), (10, 7, 32, 3, 3, 1, 2, false, true),
            (8, 9, 64, 4, 1, 1, 1, true, true), (11, 6, 48, 3, 5, 2, 1, false, false), (40, 36, 32, 3, 3, 1, 1, true, true),
        ]
        for t in cases {
            let weights = random.floats(t.k * t.k * t.c * t.out, in: -1...1), b = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [t.k, t.k, t.c, t.out], values: weights), bias: Tensor(b), strides: [t.stride, t.stride],
                                  dilation: [t.dilation, t.dilation], padding: t.same ? .same : .valid, activation: t.softmax ? .softmax : .linear)
            let g = try Graph.sequential(name: "head", inputShape: [t.h, t.w, t.c], layers: [("conv", .conv2d(conv))])
            try check(g, batch: 2) { x in
                let y = ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: weights, kh: t.k, kw: t.k, out: t.out, bias: b,
                                            stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: t.same, groups: 1).values
                guard t.softmax else { return y }
                return stride(from: 0, to: y.count, by: t.out).flatMap { p -> [Double] in
                    let row = y[p..<(p + t.out)], top = row.max()!, e = row.map { Foundation.exp($0 - top) }, sum = e.reduce(0, +)
                    return e.map { $0 / sum }
                }
            }
        }
    }

    /// Dilated convs whose taps often read the zero border (DeepLab's ASPP: rates 12, 24, 36 on a
    /// small map, where a rate past the map leaves the centre tap alone) run tap by tap over the
    /// pixels each tap reaches (`DilatedConvolution`); dilated convs almost all inside the input
    /// (over 90% of their products) keep the GEMM. Both against the plain definition, strides and
    /// `valid` padding included.
    func testDilatedConvolutionsMostlyOverTheBorder() throws {
        let cases: [(h: Int, w: Int, c: Int, out: Int, k: Int, stride: Int, dilation: Int, same: Bool, tapByTap: Bool)] = [
            (7, 6, 24, 20, 3, 1, 6, true, true), (7, 7, 16, 33, 3, 1, 12, true, true), (9, 8, 20, 16, 3, 2, 4, true, true),
            (12, 11, 8, 17, 3, 1, 2, true, true), (10, 9, 12, 8, 3, 1, 4, false, false), (7, 9, 16, 16, 5, 1, 3, true, true),
            (40, 38, 8, 16, 3, 1, 2, true, false),
        ]
        // A TCN's dilated causal 1-D conv over a short sequence.
        let kernel1D = random.floats(3 * 6 * 10, in: -1...1), bias1D = random.floats(10, in: -1...1)
        let tcn = try Graph.sequential(name: "tcn", inputShape: [40, 6], layers: [("conv", .conv2d(try Conv2D(
            kernel: Tensor(shape: [3, 6, 10], values: kernel1D), bias: Tensor(bias1D), strides: [1, 1], dilation: [1, 16], padding: .causal)))])
        XCTAssertEqual(try Executor(graph: tcn).stepProfile.map(\.operation), ["dilated"])
        try check(tcn, batch: 2) { x in
            conv1d(x, steps: 40, c: 6, kernel: kernel1D, k: 3, out: 10, groups: 1, bias: bias1D, stride: 1, dilation: 16, padding: .causal)
        }
        for t in cases {
            let weights = random.floats(t.k * t.k * t.c * t.out, in: -1...1), b = random.floats(t.out, in: -1...1)
            let conv = try Conv2D(kernel: Tensor(shape: [t.k, t.k, t.c, t.out], values: weights), bias: Tensor(b), strides: [t.stride, t.stride],
                                  dilation: [t.dilation, t.dilation], padding: t.same ? .same : .valid, activation: .relu)
            let g = try Graph.sequential(name: "aspp", inputShape: [t.h, t.w, t.c], layers: [("conv", .conv2d(conv))])
            XCTAssertEqual(try Executor(graph: g).stepProfile.map(\.operation) == ["dilated"], t.tapByTap, "\(t)")
            try check(g, batch: 2) { x in
                ReferenceOps.conv2d(x, h: t.h, w: t.w, c: t.c, kernel: weights, kh: t.k, kw: t.k, out: t.out, bias: b,
                                    stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: t.same, groups: 1).values.map { max($0, 0) }
            }
        }
    }

    /// Strided transposed convolutions, long 1-D convolutions and upsamplings over maps large enough
    /// that one image's step is shared by the threads (by input rows, by steps, by output rows): the
    /// same values bit for bit as one thread, whatever the shares (kernels that overlap their
    /// neighbours' rows, that do not, and that leave rows without a tap).
    func testTransposedConvolutions1DConvolutionsAndUpsamplingsSplitEqualOneThread() throws {
        var graphs: [(String, Graph)] = []
        for (k, stride, padding) in [(3, 2, Padding.valid), (2, 2, .same), (4, 2, .same), (2, 3, .valid), (5, 3, .same)] {
            let (h, w, c, out) = (19, 17, 12, 28)
            let conv = try Conv2DTranspose(kernel: Tensor(shape: [k, k, out, c], values: random.floats(k * k * out * c, in: -1...1)),
                                           bias: Tensor(random.floats(out, in: -1...1)), strides: [stride, stride], padding: padding,
                                           activation: .relu)
            graphs.append(("k\(k) s\(stride) \(padding)", try Graph.sequential(name: "t", inputShape: [h, w, c], layers: [("up", .conv2dTranspose(conv))])))
        }
        // Long 1-D convs (run down a column so that threads share their steps): same, causal and
        // strided valid, a dilation.
        // The last two dilated past much of the sequence: tap by tap, down a column.
        for (k, stride, dilation, padding) in [(16, 1, 1, Padding.same), (5, 1, 2, .causal), (16, 4, 1, .valid), (3, 2, 1, .same),
                                               (3, 1, 400, .causal), (3, 1, 300, .same)] {
            let (steps, c, out) = (1500, 12, 64)
            let conv = try Conv2D(kernel: Tensor(shape: [k, c, out], values: random.floats(k * c * out, in: -1...1)),
                                  bias: Tensor(random.floats(out, in: -1...1)), strides: [1, stride], dilation: [1, dilation], padding: padding,
                                  activation: .relu)
            graphs.append(("conv1d k\(k) s\(stride) d\(dilation) \(padding)",
                           try Graph.sequential(name: "c", inputShape: [steps, c], layers: [("conv", .conv2d(conv))])))
        }
        // A segmentation map's layout change (NHWC → NCHW, as an ONNX model's output), and back.
        graphs.append(("transpose to NCHW", try Graph.sequential(name: "t", inputShape: [45, 37, 21], layers: [("t", .transpose([2, 0, 1]))])))
        graphs.append(("transpose to NHWC", try Graph.sequential(name: "t", inputShape: [21, 45, 37], layers: [("t", .transpose([1, 2, 0]))])))
        // ASPP-like dilated convs on a 14×14 map (tap by tap), by output rows.
        for rate in [6, 12, 24] {
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 32, 176], values: random.floats(9 * 32 * 176, in: -1...1)),
                                  bias: Tensor(random.floats(176, in: -1...1)), dilation: [rate, rate], padding: .same, activation: .relu)
            graphs.append(("dilated rate \(rate)", try Graph.sequential(name: "d", inputShape: [14, 14, 32], layers: [("conv", .conv2d(conv))])))
        }
        for bilinear in [false, true] {
            let up = try Upsampling(factors: [2, 3], interpolation: bilinear ? .bilinear : .nearest)
            graphs.append(("upsampling bilinear \(bilinear)", try Graph.sequential(name: "u", inputShape: [15, 11, 40], layers: [("up", .upsampling(up))])))
        }
        for (name, graph) in graphs {
            let executor = try Executor(graph: graph)
            XCTAssertGreaterThanOrEqual(executor.outputSize, 20000, name)
            for batch in [1, 2] {
                let input = random.floats(batch * executor.inputSize, in: -2...2)
                let one = try executor.run(input, threads: 1).map(\.bitPattern)
                for threads in [2, 3] {
                    XCTAssertTrue(try Executor(graph: graph).run(input, threads: threads).map(\.bitPattern) == one, "\(name), batch \(batch), \(threads) threads")
                }
                for shares in [[0.1, 0.9], [0.75, 0.25]] {
                    let skewed = try Executor(graph: graph)
                    skewed.setBalance(shares, threads: shares.count)
                    XCTAssertTrue(try skewed.run(input, threads: shares.count).map(\.bitPattern) == one, "\(name), shares \(shares)")
                }
            }
        }
    }

    func testUpsamplingNearestAndBilinear() throws {
        for (h, w, c, fy, fx) in [(3, 4, 2, 2, 2), (5, 3, 3, 3, 2), (1, 6, 4, 1, 3), (4, 4, 1, 2, 1)] {
            for bilinear in [false, true] {
                let up = try Upsampling(factors: [fy, fx], interpolation: bilinear ? .bilinear : .nearest)
                let graph = try Graph.sequential(name: "u", inputShape: [h, w, c], layers: [("up", .upsampling(up))])
                try check(graph, batch: 2, tolerance: 1e-5) { x in
                    var y: [Double] = []
                    for oy in 0..<(h * fy) { for ox in 0..<(w * fx) { for ch in 0..<c {
                        if !bilinear { y.append(x[((oy / fy) * w + ox / fx) * c + ch]); continue }
                        // Half-pixel centres, clamped at the edges (tf.image.resize, bilinear).
                        let sy = max((Double(oy) + 0.5) / Double(fy) - 0.5, 0), sx = max((Double(ox) + 0.5) / Double(fx) - 0.5, 0)
                        let y0 = Int(sy), x0 = Int(sx), y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1)
                        let ly = sy - Double(y0), lx = sx - Double(x0)
                        func at(_ yy: Int, _ xx: Int) -> Double { x[(yy * w + xx) * c + ch] }
                        let top = at(y0, x0) * (1 - lx) + at(y0, x1) * lx, bottom = at(y1, x0) * (1 - lx) + at(y1, x1) * lx
                        y.append(top * (1 - ly) + bottom * ly)
                    } } }
                    return y
                }
            }
        }
        // Bilinear in TF's Float arithmetic and order, bit for bit (each input row's horizontal lerps
        // are made once and kept while output rows read them): factors of 8 and 3, three images (the
        // kept rows must not carry over from one image to the next), one thread and two.
        for (h, w, c, fy, fx) in [(7, 5, 21, 8, 8), (4, 6, 3, 3, 2), (1, 3, 5, 4, 4)] {
            let up = try Upsampling(factors: [fy, fx], interpolation: .bilinear)
            let executor = try Executor(graph: try Graph.sequential(name: "u", inputShape: [h, w, c], layers: [("up", .upsampling(up))]))
            let x = random.floats(3 * h * w * c, in: -2...2)
            func lerps(_ outSize: Int, _ inSize: Int) -> [(Int, Int, Float)] {
                (0..<outSize).map { i in
                    let p = (Float(i) + 0.5) * (Float(inSize) / Float(outSize)) - 0.5, f = p.rounded(.down)
                    return (max(Int(f), 0), min(Int(p.rounded(.up)), inSize - 1), p - f)
                }
            }
            let ys = lerps(h * fy, h), xs = lerps(w * fx, w)
            var expected: [Float] = []
            for b in 0..<3 { for (y0, y1, ly) in ys { for (x0, x1, lx) in xs { for ch in 0..<c {
                func at(_ yy: Int, _ xx: Int) -> Float { x[((b * h + yy) * w + xx) * c + ch] }
                let top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * lx, bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * lx
                expected.append(top + (bottom - top) * ly)
            } } } }
            for threads in [1, 2] {
                XCTAssertEqual(try executor.run(x, threads: threads), expected, "\(h) × \(w) × \(c) by \(fy) × \(fx), \(threads) threads")
            }
            // Followed by the map's NHWC → NCHW (a segmentation model's end): written channels-first
            // by the upsampling, no transpose step, the same values; nearest too.
            let (oh, ow) = (h * fy, w * fx)
            for bilinear in [true, false] {
                let upsampling = try Upsampling(factors: [fy, fx], interpolation: bilinear ? .bilinear : .nearest)
                let turned = try Executor(graph: try Graph.sequential(name: "u", inputShape: [h, w, c], layers: [
                    ("up", .upsampling(upsampling)), ("to_nchw", .transpose([2, 0, 1]))]))
                var want: [Float] = []
                for b in 0..<3 { for ch in 0..<c { for oy in 0..<oh { for ox in 0..<ow {
                    want.append(bilinear ? expected[((b * oh + oy) * ow + ox) * c + ch] : x[((b * h + oy / fy) * w + ox / fx) * c + ch])
                } } } }
                for threads in [1, 2] {
                    XCTAssertEqual(try turned.run(x, threads: threads), want, "\(h) × \(w) × \(c) by \(fy) × \(fx) to NCHW, \(threads) threads")
                }
                XCTAssertEqual(turned.stepProfile.map(\.operation), ["upsample"], "\(h) × \(w) × \(c): one step")
            }
        }
        // UpSampling1D: each step repeated.
        let graph = try Graph.sequential(name: "u1", inputShape: [5, 3], layers: [("up", .upsampling(try Upsampling(factors: [1, 3], interpolation: .nearest)))])
        try check(graph, batch: 2) { x in (0..<15).flatMap { t in (0..<3).map { x[(t / 3) * 3 + $0] } } }
    }

    func testCroppingAndOneDimensionalPoolingAndPadding() throws {
        let crop = try Graph.sequential(name: "c", inputShape: [7, 6, 2], layers: [("crop", .cropping2d([1, 2, 0, 3]))])
        try check(crop, batch: 2) { x in
            var y: [Double] = []
            for yy in 1..<5 { for xx in 0..<3 { for ch in 0..<2 { y.append(x[(yy * 6 + xx) * 2 + ch]) } } }
            return y
        }
        // A run of one axis: the channels (ShuffleNet's split), a middle axis, the first.
        for (axis, start, end) in [(2, 1, 2), (1, 2, 5), (0, 3, 7)] {
            let slice = try Graph.sequential(name: "s", inputShape: [7, 6, 2], layers: [("slice", .slice(axis: axis, start: start, end: end))])
            try check(slice, batch: 2) { x in
                var y: [Double] = []
                for yy in 0..<7 { for xx in 0..<6 { for ch in 0..<2 {
                    let index = [yy, xx, ch][axis]
                    if index >= start, index < end { y.append(x[(yy * 6 + xx) * 2 + ch]) }
                } } }
                return y
            }
        }
        XCTAssertThrowsError(try Graph.sequential(name: "s", inputShape: [7, 6, 2], layers: [("slice", .slice(axis: 2, start: 1, end: 3))]))
        let crop1 = try Graph.sequential(name: "c1", inputShape: [9, 3], layers: [("crop", .cropping2d([0, 0, 2, 1]))])
        try check(crop1, batch: 2) { x in Array(x[6..<24]) }
        let pad1 = try Graph.sequential(name: "p1", inputShape: [4, 2], layers: [("pad", .zeroPadding2d([0, 0, 1, 2]))])
        try check(pad1, batch: 2) { x in [0, 0] + x + [0, 0, 0, 0] }
        for (isMax, same) in [(true, false), (false, true), (true, true)] {
            let pool = try Pool2D(kind: isMax ? .max : .average, size: [1, 3], strides: [1, 2], padding: same ? .same : .valid)
            let graph = try Graph.sequential(name: "p", inputShape: [10, 3], layers: [("pool", .pool2d(pool))])
            try check(graph, batch: 2) { x in
                ReferenceOps.pool(x, h: 1, w: 10, c: 3, size: [1, 3], stride: [1, 2], same: same, isMax: isMax).values
            }
        }
        for isMax in [false, true] {
            let graph = try Graph.sequential(name: "gp", inputShape: [6, 4], layers: [("gp", .globalPool(kind: isMax ? .max : .average, keepDims: true))])
            XCTAssertEqual(try graph.inferShapes()["gp"], [1, 4])
            try check(graph, batch: 2) { x in
                (0..<4).map { c in let column = (0..<6).map { x[$0 * 4 + c] }; return isMax ? column.max()! : column.reduce(0, +) / 6 }
            }
        }
    }

    /// Subtract, maximum, minimum and average, on equal and broadcast shapes.
    func testMergesWithBroadcasting() throws {
        for kind in MergeKind.allCases {
            for shapes in [[[4, 3, 2], [4, 3, 2]], [[4, 3, 2], [1, 1, 2]], [[1, 3, 1], [4, 3, 2], [4, 1, 2]]] where kind != .subtract || shapes.count == 2 {
                var nodes = [Node(name: "in", operation: .input(shape: [5]), inputs: [])]
                var kernels: [[Float]] = []
                for (i, shape) in shapes.enumerated() {
                    let size = shape.reduce(1, *)
                    let kernel = random.floats(5 * size, in: -1...1)
                    kernels.append(kernel)
                    nodes.append(Node(name: "d\(i)", operation: .dense(try Dense(kernel: Tensor(shape: [5, size], values: kernel), bias: nil,
                                                                                 activation: .linear)), inputs: ["in"]))
                    nodes.append(Node(name: "r\(i)", operation: .reshape(shape), inputs: ["d\(i)"]))
                }
                nodes.append(Node(name: "m", operation: .merge(kind), inputs: shapes.indices.map { "r\($0)" }))
                let graph = try Graph(name: "m", nodes: nodes, outputs: ["m"])
                let output = try Graph.broadcastShape(shapes, node: "m")
                try check(graph, batch: 3) { x in
                    var operands: [[Double]] = []
                    for (shape, kernel) in zip(shapes, kernels) {
                        let size = shape.reduce(1, *)
                        var values = [Double](repeating: 0, count: size)
                        for o in 0..<size { for i in 0..<5 { values[o] += x[i] * Double(kernel[i * size + o]) } }
                        operands.append(values)
                    }
                    return (0..<output.reduce(1, *)).map { flat in
                        var rest = flat, coordinate = [Int](repeating: 0, count: 3)
                        for d in stride(from: 2, through: 0, by: -1) { coordinate[d] = rest % output[d]; rest /= output[d] }
                        let values = zip(shapes, operands).map { shape, values in
                            values[(0..<3).reduce(0) { $0 * shape[$1] + (shape[$1] == 1 ? 0 : coordinate[$1]) }]
                        }
                        switch kind {
                        case .subtract: return values[0] - values[1]
                        case .maximum: return values.max()!
                        case .minimum: return values.min()!
                        case .average: return values.reduce(0, +) / Double(values.count)
                        }
                    }
                }
            }
        }
    }

    func testHardSwishAndDenseOnTheLastAxis() throws {
        let kernel = random.floats(6 * 4, in: -1...1), bias = random.floats(4, in: -1...1)
        let dense = try Dense(kernel: Tensor(shape: [6, 4], values: kernel), bias: Tensor(bias), activation: .hardSwish)
        let graph = try Graph.sequential(name: "d", inputShape: [3, 2, 6], layers: [("dense", .dense(dense))])
        XCTAssertEqual(try graph.inferShapes()["dense"], [3, 2, 4])
        try check(graph, batch: 2) { x in
            (0..<6).flatMap { row in
                (0..<4).map { o in
                    let z = (0..<6).reduce(Double(bias[o])) { $0 + x[row * 6 + $1] * Double(kernel[$1 * 4 + o]) }
                    return z * min(max(z + 3, 0), 6) / 6
                }
            }
        }
    }
}

/// Liveness memory planning: activation buffers are reused once no later step reads them.
final class MemoryPlanTests: XCTestCase {
    func testAChainReusesTwoBuffersAndABranchKeepsItsInputAlive() throws {
        var random = SeededGenerator(seed: 5)
        var layers: [(name: String, operation: Op)] = []
        for i in 0..<20 {
            layers.append(("d\(i)", .dense(try Dense(kernel: Tensor(shape: [64, 64], values: random.floats(64 * 64, in: -0.2...0.2)),
                                                     bias: nil, activation: .linear))))
            layers.append(("a\(i)", .activation(.tanh)))
        }
        let chain = try Executor(graph: try Graph.sequential(name: "c", inputShape: [64], layers: layers))
        let (planned, unplanned) = chain.plannedFloatsPerSample
        XCTAssertEqual(unplanned, 19 * 64, "each tanh is applied by its Dense as it writes: 20 steps, the last into the output")
        XCTAssertEqual(planned, 2 * 64, "a chain needs two buffers, whatever its length")

        // A skip connection: the block's input stays alive until the Add reads it.
        let dense = { try Dense(kernel: Tensor(shape: [8, 8], values: random.floats(64, in: -1...1)), bias: nil, activation: .relu) }
        let nodes = [
            Node(name: "in", operation: .input(shape: [8]), inputs: []),
            Node(name: "a", operation: .dense(try dense()), inputs: ["in"]),
            Node(name: "b", operation: .dense(try dense()), inputs: ["a"]),
            Node(name: "c", operation: .dense(try dense()), inputs: ["b"]),
            Node(name: "sum", operation: .add, inputs: ["a", "c"]),
            Node(name: "out", operation: .dense(try dense()), inputs: ["sum"]),
        ]
        let graph = try Graph(name: "skip", nodes: nodes, outputs: ["out"])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.plannedFloatsPerSample.planned, 3 * 8)
        // The outputs equal a step-by-step evaluation of each node on its own.
        let x = random.floats(5 * 8, in: -1...1)
        func values(_ name: String) throws -> [Float] {
            let sub = try Graph(name: "sub", nodes: Array(nodes.prefix { $0.name != name }) + [nodes.first { $0.name == name }!], outputs: [name])
            return try Executor(graph: sub).run(x)
        }
        XCTAssertEqual(try executor.run(x), try values("out"))
        XCTAssertEqual(try executor.run(x, threads: 2), try values("out"))
    }

    /// A 1×1 conv with its residual Add fused in writes its output into the residual's buffer when
    /// nothing reads the residual after it (two buffers for the block instead of three), but not
    /// when the conv reads the residual too (x + conv(x): its second column block would read what
    /// the first wrote). Either way the values of a step-by-step evaluation, on one and two threads.
    func testAResidualConvWritesOverItsResidualUnlessItReadsIt() throws {
        var random = SeededGenerator(seed: 9)
        let c = 96    // two column blocks of the GEMM (64 + 32)
        let conv = { (activation: Activation) in
            try Conv2D(kernel: Tensor(shape: [1, 1, c, c], values: random.floats(c * c, in: -0.2...0.2)),
                       bias: Tensor(random.floats(c, in: -1...1)), padding: .same, activation: activation)
        }
        let block = [
            Node(name: "in", operation: .input(shape: [6, 6, c]), inputs: []),
            Node(name: "a", operation: .conv2d(try conv(.relu)), inputs: ["in"]),
            Node(name: "b", operation: .conv2d(try conv(.relu)), inputs: ["a"]),
            Node(name: "c", operation: .conv2d(try conv(.linear)), inputs: ["b"]),
            Node(name: "sum", operation: .add, inputs: ["a", "c"]),
            Node(name: "out", operation: .conv2d(try conv(.relu)), inputs: ["sum"]),
        ]
        let itself = [
            Node(name: "in", operation: .input(shape: [6, 6, c]), inputs: []),
            Node(name: "a", operation: .conv2d(try conv(.relu)), inputs: ["in"]),
            Node(name: "c", operation: .conv2d(try conv(.linear)), inputs: ["a"]),
            Node(name: "sum", operation: .add, inputs: ["a", "c"]),
            Node(name: "out", operation: .conv2d(try conv(.relu)), inputs: ["sum"]),
        ]
        for (nodes, buffers) in [(block, 2), (itself, 2)] {    // (block: 3 without writing over the residual)
            let graph = try Graph(name: "residual", nodes: nodes, outputs: ["out"])
            let executor = try Executor(graph: graph)
            XCTAssertFalse(executor.stepProfile.contains { $0.operation == "add" }, "the Add is fused into the conv")
            XCTAssertEqual(executor.plannedFloatsPerSample.planned, buffers * 36 * c, nodes.map(\.name).joined(separator: " "))
            // Observed, the conv's values must exist: the Add stays a step of its own, and nothing is overwritten.
            let apart = try Executor(graph: graph, observing: ["c"])
            XCTAssertTrue(apart.stepProfile.contains { $0.operation == "add" })
            let x = random.floats(3 * 36 * c, in: -1...1)
            let expected = try apart.run(x)
            for threads in [1, 2] {
                XCTAssertEqual(try executor.run(x, threads: threads).map(\.bitPattern), expected.map(\.bitPattern),
                               "\(nodes.map(\.name)) threads \(threads)")
            }
        }
    }
}
