import BNFolding
import ModelIR
import Runtime
import TestSupport
import XCTest

/// Every pattern of the fold catalogue: folded and unfolded outputs agree,
/// the BN is gone (or became an affine for the stated reason).
final class FoldCatalogueTests: XCTestCase {
    private var random = SeededGenerator(seed: 99)

    private func bn(_ channels: Int, center: Bool = true, scale: Bool = true) throws -> Op {
        .batchNorm(try BatchNorm(gamma: scale ? Tensor(random.floats(channels, in: 0.3...2.5)) : nil,
                                 beta: center ? Tensor(random.floats(channels, in: -1.5...1.5)) : nil,
                                 movingMean: Tensor(random.floats(channels, in: -2...2)),
                                 movingVariance: Tensor(random.floats(channels, in: 0.05...4)), epsilon: 1e-3))
    }

    private func conv(_ inC: Int, _ outC: Int, k: Int = 3, stride: Int = 1, dilation: Int = 1, padding: Padding = .same,
                      groups: Int = 1, bias: Bool = true, activation: Activation = .linear) throws -> Op {
        .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, inC / groups, outC], values: random.floats(k * k * inC / groups * outC, in: -0.5...0.5)),
                           bias: bias ? Tensor(random.floats(outC, in: -0.5...0.5)) : nil, strides: [stride, stride],
                           dilation: [dilation, dilation], padding: padding, groups: groups, activation: activation))
    }

    private func dense(_ inputs: Int, _ units: Int, bias: Bool = true) throws -> Op {
        .dense(try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -0.5...0.5)),
                         bias: bias ? Tensor(random.floats(units, in: -0.5...0.5)) : nil, activation: .linear))
    }

    /// Folds, checks outputs agree, returns the events.
    @discardableResult
    private func foldAndCompare(_ graph: Graph, line: UInt = #line) throws -> (FoldResult, [String]) {
        let result = try BNFolder.fold(graph)
        let executor = try Executor(graph: graph)
        let input = random.floats(4 * executor.inputSize, in: -1...1)
        let difference = maxAbsDifference(try executor.run(input), try Executor(graph: result.graph).run(input))
        XCTAssertLessThanOrEqual(difference, 1e-5, "folded vs unfolded", line: line)
        return (result, result.graph.nodes.map(\.operation.kind))
    }

    private func assertFolded(_ events: [FoldEvent], _ expected: [FoldEvent.Outcome], line: UInt = #line) {
        XCTAssertEqual(events.map(\.outcome), expected, line: line)
    }

    private func assertKept(_ result: FoldResult, because text: String, line: UInt = #line) {
        guard case .keptAsAffine(let reason) = result.events.first?.outcome else { return XCTFail("not kept", line: line) }
        XCTAssertTrue(reason.contains(text), reason, line: line)
        XCTAssertTrue(result.graph.nodes.contains { $0.operation.kind == "affine" }, line: line)
    }

    func testConvThenBNForEveryConvVariant() throws {
        let variants: [(stride: Int, dilation: Int, padding: Padding, groups: Int, bias: Bool)] = [
            (1, 1, .same, 1, false), (2, 1, .same, 1, true), (1, 2, .valid, 1, true), (2, 1, .valid, 2, false), (1, 1, .same, 4, true),
        ]
        for v in variants {
            let graph = try Graph.sequential(name: "m", inputShape: [9, 9, 4], layers: [
                ("conv", try conv(4, 8, stride: v.stride, dilation: v.dilation, padding: v.padding, groups: v.groups, bias: v.bias)),
                ("bn", try bn(8)), ("relu", .activation(.relu)),
            ])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "conv2d", "activation"], "\(v)")
            assertFolded(result.events, [.foldedIntoPrevious(layer: "conv")])
        }
    }

    func testDepthwiseThenBNWithDepthMultiplier() throws {
        for multiplier in [1, 2, 3] {
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 3, multiplier], values: random.floats(27 * multiplier, in: -1...1)),
                                         bias: nil, strides: [2, 2], padding: .same)
            let graph = try Graph.sequential(name: "m", inputShape: [8, 8, 3], layers: [
                ("dw", .depthwiseConv2d(dw)), ("bn", try bn(3 * multiplier, center: multiplier != 2, scale: multiplier != 3)),
            ])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "depthwise_conv2d"])
            assertFolded(result.events, [.foldedIntoPrevious(layer: "dw")])
        }
    }

    func testDenseWithoutBiasThenBN() throws {
        let graph = try Graph.sequential(name: "m", inputShape: [12], layers: [("d", try dense(12, 5, bias: false)), ("bn", try bn(5))])
        let (result, kinds) = try foldAndCompare(graph)
        XCTAssertEqual(kinds, ["input", "dense"])
        assertFolded(result.events, [.foldedIntoPrevious(layer: "d")])
    }

    func testBNBeforeDenseFoldsForward() throws {
        let graph = try Graph.sequential(name: "m", inputShape: [6], layers: [
            ("act", .activation(.tanh)), ("bn", try bn(6)), ("d", try dense(6, 3, bias: false)),
        ])
        let (result, kinds) = try foldAndCompare(graph)
        XCTAssertEqual(kinds, ["input", "activation", "dense"])
        assertFolded(result.events, [.foldedIntoNext(layer: "d")])
    }

    func testBNBeforeValidConvFoldsForwardIncludingGroups() throws {
        for groups in [1, 2] {
            let graph = try Graph.sequential(name: "m", inputShape: [7, 7, 4], layers: [
                ("act", .activation(.relu)), ("bn", try bn(4)), ("conv", try conv(4, 6, stride: 2, padding: .valid, groups: groups)),
            ])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "activation", "conv2d"])
            assertFolded(result.events, [.foldedIntoNext(layer: "conv")])
        }
        // A 1x1 'same' conv pads nothing: exact, folded.
        let pointwise = try Graph.sequential(name: "m", inputShape: [5, 5, 4], layers: [
            ("act", .activation(.relu)), ("bn", try bn(4)), ("conv", try conv(4, 6, k: 1, padding: .same)),
        ])
        assertFolded(try foldAndCompare(pointwise).0.events, [.foldedIntoNext(layer: "conv")])
    }

    /// SeparableConv2D/1D → BN: into the pointwise kernel and the bias.
    func testSeparableThenBNFoldsIntoThePointwiseKernel() throws {
        for (oneD, bias) in [(false, true), (false, false), (true, true)] {
            let depthwiseShape = oneD ? [3, 4, 2] : [3, 3, 4, 2], pointwiseShape = oneD ? [1, 8, 6] : [1, 1, 8, 6]
            let separable = try SeparableConv2D(
                depthwiseKernel: Tensor(shape: depthwiseShape, values: random.floats(depthwiseShape.reduce(1, *), in: -1...1)),
                pointwiseKernel: Tensor(shape: pointwiseShape, values: random.floats(48, in: -1...1)),
                bias: bias ? Tensor(random.floats(6, in: -1...1)) : nil, strides: [1, oneD ? 2 : 1], padding: .same)
            let graph = try Graph.sequential(name: "m", inputShape: oneD ? [11, 4] : [7, 6, 4], layers: [
                ("sep", .separableConv2d(separable)), ("bn", try bn(6)), ("act", .activation(.relu)),
            ])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "separable_conv2d", "activation"])
            assertFolded(result.events, [.foldedIntoPrevious(layer: "sep")])
        }
    }

    /// Conv1D → BN and a causal Conv1D → BN fold like Conv2D.
    func testConv1DThenBN() throws {
        for padding in [Padding.valid, .same, .causal] {
            let conv = try Conv2D(kernel: Tensor(shape: [3, 4, 5], values: random.floats(60, in: -1...1)), bias: nil,
                                  strides: [1, 1], dilation: [1, 2], padding: padding)
            let graph = try Graph.sequential(name: "m", inputShape: [12, 4], layers: [("conv", .conv2d(conv)), ("bn", try bn(5))])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "conv2d"])
            assertFolded(result.events, [.foldedIntoPrevious(layer: "conv")])
        }
    }

    /// Conv2DTranspose → BN: the output channels, axis 2 of its (kh, kw, out, in) kernel.
    func testTransposedConvThenBNScalesOutputChannels() throws {
        for (stride, padding) in [(2, Padding.same), (2, .valid), (1, .same)] {
            let transposed = try Conv2DTranspose(kernel: Tensor(shape: [3, 3, 5, 4], values: random.floats(180, in: -1...1)),
                                                 bias: stride == 1 ? nil : Tensor(random.floats(5, in: -1...1)), strides: [stride, stride],
                                                 padding: padding)
            let graph = try Graph.sequential(name: "m", inputShape: [4, 5, 4], layers: [("up", .conv2dTranspose(transposed)), ("bn", try bn(5))])
            let (result, kinds) = try foldAndCompare(graph)
            XCTAssertEqual(kinds, ["input", "conv2d_transpose"])
            assertFolded(result.events, [.foldedIntoPrevious(layer: "up")])
        }
    }

    /// Conv2DTranspose → Cropping2D → BN (PyTorch's ConvTranspose2d with padding, as imported):
    /// the crop keeps the channels, so the BN folds into the transposed conv through it; not when
    /// the crop's output is read elsewhere too.
    func testTransposedConvThenCropThenBNFoldsThroughTheCrop() throws {
        let transposed = try Conv2DTranspose(kernel: Tensor(shape: [3, 3, 5, 4], values: random.floats(180, in: -1...1)),
                                             bias: Tensor(random.floats(5, in: -1...1)), strides: [2, 2], padding: .valid)
        let graph = try Graph.sequential(name: "m", inputShape: [4, 5, 4], layers: [
            ("up", .conv2dTranspose(transposed)), ("crop", .cropping2d([1, 0, 1, 0])), ("bn", try bn(5)), ("relu", .activation(.relu)),
        ])
        let (result, kinds) = try foldAndCompare(graph)
        XCTAssertEqual(kinds, ["input", "conv2d_transpose", "cropping2d", "activation"])
        assertFolded(result.events, [.foldedIntoPrevious(layer: "up")])
        XCTAssertEqual(result.graph.node(named: "relu")?.inputs, ["crop"])
        let nodes = [
            Node(name: "in", operation: .input(shape: [4, 5, 4]), inputs: []),
            Node(name: "up", operation: .conv2dTranspose(transposed), inputs: ["in"]),
            Node(name: "crop", operation: .cropping2d([1, 0, 1, 0]), inputs: ["up"]),
            Node(name: "bn", operation: try bn(5), inputs: ["crop"]),
            Node(name: "sum", operation: .add, inputs: ["bn", "crop"]),
        ]
        assertKept(try foldAndCompare(try Graph(name: "m", nodes: nodes, outputs: ["sum"])).0, because: "no weights to fold into")
    }

    /// BN → a depthwise conv that pads nothing folds into its input channels; a padded one is kept.
    func testBNBeforeDepthwiseFoldsOnlyWithoutPadding() throws {
        for (multiplier, padding) in [(1, Padding.valid), (2, .valid), (1, .same)] {
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 4, multiplier], values: random.floats(36 * multiplier, in: -1...1)),
                                         bias: multiplier == 2 ? Tensor(random.floats(8, in: -1...1)) : nil, strides: [1, 1], padding: padding)
            let graph = try Graph.sequential(name: "m", inputShape: [7, 7, 4], layers: [
                ("act", .activation(.relu)), ("bn", try bn(4)), ("dw", .depthwiseConv2d(dw)),
            ])
            let (result, _) = try foldAndCompare(graph)
            if padding == .valid {
                assertFolded(result.events, [.foldedIntoNext(layer: "dw")])
            } else {
                assertKept(result, because: "pads its input")
            }
        }
    }

    /// BN before a layer normalization or an upsampling has nothing to fold into: kept, with the reason.
    func testBNBeforeLayersWithoutFoldableWeightsIsKept() throws {
        let ln = try LayerNorm(axes: [2], epsilon: 1e-6, gamma: Tensor(random.floats(4, in: 0.5...1.5)), beta: nil)
        let graph = try Graph.sequential(name: "m", inputShape: [5, 5, 4], layers: [
            ("act", .activation(.relu)), ("bn", try bn(4)), ("ln", .layerNorm(ln)),
        ])
        assertKept(try foldAndCompare(graph).0, because: "cannot absorb it")
    }

    func testBNBeforePaddedConvIsKept() throws {
        let graph = try Graph.sequential(name: "m", inputShape: [7, 7, 4], layers: [
            ("act", .activation(.relu)), ("bn", try bn(4)), ("conv", try conv(4, 6, padding: .same)),
        ])
        let (result, _) = try foldAndCompare(graph)
        assertKept(result, because: "pads its input")
    }

    func testNoFoldAcrossANonlinearity() throws {
        let graph = try Graph.sequential(name: "m", inputShape: [6, 6, 2], layers: [
            ("conv", try conv(2, 4, activation: .relu)), ("bn", try bn(4)), ("gap", .globalPool(kind: .average, keepDims: false)),
        ])
        let (result, _) = try foldAndCompare(graph)
        assertKept(result, because: "applies relu before it")
    }

    func testNoFoldWhenTheOutputFeedsTwoLayers() throws {
        let nodes = [
            Node(name: "in", operation: .input(shape: [6, 6, 2]), inputs: []),
            Node(name: "conv", operation: try conv(2, 4), inputs: ["in"]),
            Node(name: "bn", operation: try bn(4), inputs: ["conv"]),
            Node(name: "sum", operation: .add, inputs: ["bn", "conv"]),
        ]
        let (result, _) = try foldAndCompare(try Graph(name: "m", nodes: nodes, outputs: ["sum"]))
        assertKept(result, because: "also used elsewhere")
    }

    func testNoFoldIntoSharedWeights() throws {
        let shared = try dense(4, 4)
        let nodes = [
            Node(name: "in", operation: .input(shape: [4]), inputs: []),
            Node(name: "d", operation: shared, inputs: ["in"]),
            Node(name: "bn", operation: try bn(4), inputs: ["d"]),
            Node(name: "d#1", operation: shared, inputs: ["bn"], sharesWeightsWith: "d"),
        ]
        let (result, _) = try foldAndCompare(try Graph(name: "m", nodes: nodes, outputs: ["d#1"]))
        assertKept(result, because: "shared")
        XCTAssertEqual(result.graph.node(named: "d")?.operation, shared)
        XCTAssertEqual(result.graph.node(named: "d#1")?.operation, shared)
    }

    func testBNWithNothingToFoldIntoBecomesAffine() throws {
        let graph = try Graph.sequential(name: "m", inputShape: [3, 3, 2], layers: [("bn", try bn(2))])
        let (result, kinds) = try foldAndCompare(graph)
        XCTAssertEqual(kinds, ["input", "affine"])
        assertKept(result, because: "model output")
    }
}
