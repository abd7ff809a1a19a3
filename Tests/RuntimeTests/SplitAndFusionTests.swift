import CKernels
import Foundation
import ModelIR
import Runtime
import TestSupport
import Synchronization
import XCTest

/// The planner's fusions (an activation into the step before it, a zero padding into the
/// conv after it, squeeze-and-excitation's product), the element-wise kernels, the GEMM's
/// packed and column-split paths, and one image split across threads: each against a plain
/// reference, or bit for bit against the unsplit step.
final class SplitAndFusionTests: XCTestCase {
    private var random = SeededGenerator(seed: 17)

    private static let formulas: [(Activation, @Sendable (Double) -> Double)] = [
        (.relu, { max($0, 0) }),
        (.relu6, { min(max($0, 0), 6) }),
        (.sigmoid, { 1 / (1 + Foundation.exp(-$0)) }),
        (.swish, { $0 / (1 + Foundation.exp(-$0)) }),
        (.hardSwish, { $0 * min(max($0 + 3, 0), 6) / 6 }),
        (.gelu(approximate: false), { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }),
    ]

    /// Relative to the value, absolute near zero.
    private func assertClose(_ value: Float, _ expected: Double, _ message: String, line: UInt = #line) {
        XCTAssertEqual(Double(value), expected, accuracy: 1e-6 * max(1, abs(expected)), message, line: line)
    }

    func testElementwiseActivationsAgainstFormulasWithoutSubnormals() throws {
        // 203 values (vector bodies and a ragged tail), from far below exp's range to far above.
        var x: [Float] = [-1000, -120, -88, -87, -86.5, -20, -3, -0.5, 0, 0.25, 2, 3, 20, 86.5, 88, 120, 1000]
        x += random.floats(203 - x.count, in: -12...12)
        for (activation, formula) in Self.formulas {
            let graph = try Graph.sequential(name: "a", inputShape: [x.count], layers: [("a", .activation(activation))])
            let y = try Executor(graph: graph).run(x)
            for (value, input) in zip(y, x) {
                assertClose(value, formula(Double(input)), "\(activation)(\(input))")
                XCTAssertFalse(value.isSubnormal, "\(activation)(\(input)) = \(value) is subnormal")
            }
        }
    }

    /// The exact GELU's vectorized form (through erfc) keeps its relative accuracy where
    /// 1 + erf(x/√2) is tiny: within 1e-6 of the value in Double down to x = −12.
    func testGeluIsRelativelyAccurateOnItsNegativeSide() throws {
        let x = (0..<241).map { Float(-12 + Double($0) * 0.1) } + random.floats(59, in: -12...3)
        let graph = try Graph.sequential(name: "g", inputShape: [x.count], layers: [("g", .activation(.gelu(approximate: false)))])
        let y = try Executor(graph: graph).run(x)
        for (value, input) in zip(y, x) {
            let v = Double(input), expected = v < 0 ? 0.5 * v * Foundation.erfc(-v / 2.0.squareRoot()) : 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))
            XCTAssertEqual(Double(value), expected, accuracy: 1e-6 * abs(expected), "gelu(\(input))")
        }
    }

    /// Dense → activation and Add → activation run as one step; the result is the formula's.
    func testActivationsFusedIntoDenseAndAdd() throws {
        for (activation, formula) in Self.formulas {
            let kernel = random.floats(7 * 37, in: -1...1), bias = random.floats(37, in: -1...1)
            let dense = try Dense(kernel: Tensor(shape: [7, 37], values: kernel), bias: Tensor(bias), activation: .linear)
            let nodes = [
                Node(name: "in", operation: .input(shape: [7]), inputs: []),
                Node(name: "d", operation: .dense(dense), inputs: ["in"]),
                Node(name: "act", operation: .activation(activation), inputs: ["d"]),
                Node(name: "twice", operation: .add, inputs: ["act", "d2"]),
                Node(name: "d2", operation: .dense(dense), inputs: ["in"]),
                Node(name: "out", operation: .activation(activation), inputs: ["twice"]),
            ]
            let graph = try Graph(name: "f", nodes: [nodes[0], nodes[1], nodes[2], nodes[4], nodes[3], nodes[5]], outputs: ["out"])
            let executor = try Executor(graph: graph)
            XCTAssertFalse(executor.stepProfile.contains { $0.operation == "activation" }, "\(activation): both activations are fused")
            let batch = 30
            let input = random.floats(batch * 7, in: -2...2)
            let y = try executor.run(input)
            for b in 0..<batch {
                for o in 0..<37 {
                    let z = (0..<7).reduce(Double(bias[o])) { $0 + Double(input[b * 7 + $1]) * Double(kernel[$1 * 37 + o]) }
                    assertClose(y[b * 37 + o], formula(formula(z) + z), "\(activation) b\(b) o\(o)")
                }
            }
        }
    }

    /// Squeeze-and-excitation's product: a feature map times one value per channel, either order.
    func testChannelScaleInEitherOrder() throws {
        let (h, w, c) = (5, 3, 19)
        for scaleFirst in [false, true] {
            let nodes = [
                Node(name: "in", operation: .input(shape: [h, w, c]), inputs: []),
                Node(name: "pool", operation: .globalPool(kind: .average, keepDims: true), inputs: ["in"]),
                Node(name: "gate", operation: .activation(.sigmoid), inputs: ["pool"]),
                Node(name: "out", operation: .multiply, inputs: scaleFirst ? ["gate", "in"] : ["in", "gate"]),
            ]
            let executor = try Executor(graph: try Graph(name: "se", nodes: nodes, outputs: ["out"]))
            XCTAssertTrue(executor.stepProfile.contains { $0.operation == "scaleChannels" })
            let batch = 3
            let input = random.floats(batch * h * w * c, in: -3...3)
            let y = try executor.run(input)
            for b in 0..<batch {
                let image = input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init)
                for ch in 0..<c {
                    let mean = stride(from: ch, to: h * w * c, by: c).reduce(0.0) { $0 + image[$1] } / Double(h * w)
                    let gate = 1 / (1 + Foundation.exp(-mean))
                    for p in 0..<(h * w) {
                        assertClose(y[b * h * w * c + p * c + ch], image[p * c + ch] * gate, "b\(b) p\(p) c\(ch)")
                    }
                }
            }
        }
    }

    /// tf.keras MobileNetV3's hard-swish chain (x + 3, ReLU(6), · (1/6), times x) planned as one
    /// hard-swish fused into the conv that computes x, either operand order of the Multiply;
    /// left as it is when a link is observed, read elsewhere, or scales by another constant.
    /// Every case against the reference chain.
    func testHardSwishChainBecomesOneActivation() throws {
        let (h, w, c, out) = (6, 5, 8, 16)
        let kernel = random.floats(9 * c * out, in: -0.5...0.5), bias = random.floats(out, in: -1...1)
        func uniform(_ scale: Float, _ shift: Float) throws -> Op {
            .affine(try Affine(scale: Tensor([Float](repeating: scale, count: out)), shift: Tensor([Float](repeating: shift, count: out))))
        }
        for (gateScale, swapped, observing, extraReader, fused) in [
            (Float(1.0 / 6.0), false, [String](), false, true), (Float(1.0 / 6.0), true, [], false, true),
            (Float(1.0 / 6.0), false, ["r6"], false, false), (Float(1.0 / 6.0), false, [], true, false), (Float(0.2), false, [], false, false),
        ] {
            var nodes = [Node(name: "in", operation: .input(shape: [h, w, c]), inputs: [])]
            nodes.append(Node(name: "conv", operation: .conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel),
                                                                           bias: Tensor(bias), padding: .same)), inputs: ["in"]))
            nodes.append(Node(name: "add3", operation: try uniform(1, 3), inputs: ["conv"]))
            nodes.append(Node(name: "r6", operation: .activation(.relu6), inputs: ["add3"]))
            nodes.append(Node(name: "mul6", operation: try uniform(gateScale, 0), inputs: ["r6"]))
            nodes.append(Node(name: "hs", operation: .multiply, inputs: swapped ? ["mul6", "conv"] : ["conv", "mul6"]))
            var output = "hs"
            if extraReader {
                nodes.append(Node(name: "other", operation: .add, inputs: ["hs", "add3"]))
                output = "other"
            }
            let graph = try Graph(name: "hs", nodes: nodes, outputs: [output])
            let executor = try Executor(graph: graph, observing: observing)
            let operations = executor.stepProfile.map(\.operation)
            XCTAssertEqual(operations == ["conv2d"] || operations == ["conv2d", "add"], fused, "\(operations)")
            XCTAssertEqual(operations.contains("affine"), !fused, "\(operations)")
            let input = random.floats(2 * h * w * c, in: -1...1)
            let ignore: ExecutionObserver = { _, _, _ in }
            let y = try executor.run(input, observer: observing.isEmpty ? nil : ignore)
            for b in 0..<2 {
                let x = input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init)
                let conv = ReferenceOps.conv2d(x, h: h, w: w, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias, stride: [1, 1],
                                               dilation: [1, 1], same: true, groups: 1).values
                let expected = conv.map { v -> Double in
                    let swish = v * min(max(v + 3, 0), 6) * Double(gateScale)
                    return extraReader ? swish + v + 3 : swish
                }
                for (k, e) in expected.enumerated() {
                    XCTAssertEqual(Double(y[b * expected.count + k]), e, accuracy: 1e-5 * max(1, abs(e)), "\(gateScale) \(observing) k\(k)")
                }
            }
        }
    }

    /// PyTorch's SiLU, `x · sigmoid(x)` (a Sigmoid and a Mul of its input), becomes one swish
    /// fused into the conv; left apart when the Sigmoid is observed, read elsewhere, or of another input.
    func testSigmoidTimesItsInputBecomesOneSwish() throws {
        let (h, w, c, out) = (6, 5, 8, 16)
        let kernel = random.floats(9 * c * out, in: -0.5...0.5), bias = random.floats(out, in: -1...1)
        for (swapped, observing, extraReader, otherInput, fused) in [
            (false, [String](), false, false, true), (true, [], false, false, true), (false, ["sig"], false, false, false),
            (false, [], true, false, false), (false, [], false, true, false),
        ] {
            var nodes = [Node(name: "in", operation: .input(shape: [h, w, c]), inputs: [])]
            nodes.append(Node(name: "conv", operation: .conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel),
                                                                           bias: Tensor(bias), padding: .same)), inputs: ["in"]))
            nodes.append(Node(name: "other", operation: .activation(.tanh), inputs: ["conv"]))
            nodes.append(Node(name: "sig", operation: .activation(.sigmoid), inputs: [otherInput ? "other" : "conv"]))
            nodes.append(Node(name: "silu", operation: .multiply, inputs: swapped ? ["sig", "conv"] : ["conv", "sig"]))
            nodes.append(Node(name: "y", operation: extraReader ? .add : .merge(.maximum), inputs: extraReader ? ["silu", "sig"] : ["silu", "other"]))
            let executor = try Executor(graph: try Graph(name: "silu", nodes: nodes, outputs: ["y"]), observing: observing)
            let operations = executor.stepProfile.map(\.operation)
            XCTAssertEqual(!operations.contains("multiply"), fused, "\(operations)")
            let input = random.floats(2 * h * w * c, in: -1...1)
            let ignore: ExecutionObserver = { _, _, _ in }
            let y = try executor.run(input, observer: observing.isEmpty ? nil : ignore)
            for b in 0..<2 {
                let x = input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init)
                let conv = ReferenceOps.conv2d(x, h: h, w: w, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias, stride: [1, 1],
                                               dilation: [1, 1], same: true, groups: 1).values
                for (k, v) in conv.enumerated() {
                    let other = Foundation.tanh(v), sig = 1 / (1 + Foundation.exp(-(otherInput ? other : v)))
                    let e = extraReader ? v * sig + sig : max(v * sig, other)
                    XCTAssertEqual(Double(y[b * conv.count + k]), e, accuracy: 1e-5 * max(1, abs(e)), "\(observing) k\(k)")
                }
            }
        }
    }

    /// The exact GELU as PyTorch exports it (x/√2, erf, +1, times x, halved) and as bnkit's ONNX
    /// writer does (x halved first) becomes one gelu fused into the Dense; not when a step of the
    /// chain is observed.
    func testErfChainsBecomeOneGelu() throws {
        let (inputs, units) = (5, 12)
        let kernel = random.floats(inputs * units, in: -1...1), bias = random.floats(units, in: -1...1)
        func uniform(_ scale: Float, _ shift: Float) throws -> Op {
            .affine(try Affine(scale: Tensor([Float](repeating: scale, count: units)), shift: Tensor([Float](repeating: shift, count: units))))
        }
        for (halvedFirst, observing, fused) in [(false, [String](), true), (true, [], true), (false, ["erf"], false)] {
            var nodes = [
                Node(name: "in", operation: .input(shape: [inputs]), inputs: []),
                Node(name: "x", operation: .dense(try Dense(kernel: Tensor(shape: [inputs, units], values: kernel), bias: Tensor(bias),
                                                            activation: .linear)), inputs: ["in"]),
                Node(name: "scaled", operation: try uniform(Float(0.5.squareRoot()), 0), inputs: ["x"]),
                Node(name: "erf", operation: .activation(.erf), inputs: ["scaled"]),
                Node(name: "shifted", operation: try uniform(1, 1), inputs: ["erf"]),
            ]
            if halvedFirst {
                nodes.append(Node(name: "half", operation: try uniform(0.5, 0), inputs: ["x"]))
                nodes.append(Node(name: "y", operation: .multiply, inputs: ["half", "shifted"]))
            } else {
                nodes.append(Node(name: "product", operation: .multiply, inputs: ["shifted", "x"]))
                nodes.append(Node(name: "y", operation: try uniform(0.5, 0), inputs: ["product"]))
            }
            let executor = try Executor(graph: try Graph(name: "gelu", nodes: nodes, outputs: ["y"]), observing: observing)
            XCTAssertEqual(executor.stepProfile.map(\.operation) == ["dense"], fused, "\(executor.stepProfile.map(\.operation))")
            let input = random.floats(3 * inputs, in: -2...2)
            let ignore: ExecutionObserver = { _, _, _ in }
            let y = try executor.run(input, observer: observing.isEmpty ? nil : ignore)
            for b in 0..<3 { for o in 0..<units {
                let v = (0..<inputs).reduce(Double(bias[o])) { $0 + Double(input[b * inputs + $1]) * Double(kernel[$1 * units + o]) }
                assertClose(y[b * units + o], 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot())), "\(halvedFirst) \(observing) o\(o)")
            } }
        }
    }

    /// A ZeroPadding2D read only by a conv is folded into the conv's own padding: no padded
    /// copy, the same values as padding first (uneven pads, strides, a depthwise and a separable conv too).
    func testZeroPaddingFoldsIntoTheNextConvolution() throws {
        let (h, w, c, out) = (9, 8, 3, 5)
        let pads = [1, 2, 0, 1]  // top, bottom, left, right
        let (ph, pw) = (h + pads[0] + pads[1], w + pads[2] + pads[3])
        func padded(_ x: [Double]) -> [Double] {
            var y = [Double](repeating: 0, count: ph * pw * c)
            for i in 0..<h { for j in 0..<w { for k in 0..<c { y[((i + pads[0]) * pw + j + pads[2]) * c + k] = x[(i * w + j) * c + k] } } }
            return y
        }
        let kernel = random.floats(3 * 3 * c * out, in: -1...1), bias = random.floats(out, in: -1...1)
        let depthwiseKernel = random.floats(3 * 3 * c, in: -1...1), pointwiseKernel = random.floats(c * out, in: -1...1)
        for kind in ["conv", "depthwise", "separable"] {
            for stride in [1, 2] {
                let op: Op
                switch kind {
                case "depthwise":
                    op = .depthwiseConv2d(try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, c, 1], values: depthwiseKernel), bias: nil,
                                                              strides: [stride, stride], padding: .valid))
                case "separable":
                    op = .separableConv2d(try SeparableConv2D(depthwiseKernel: Tensor(shape: [3, 3, c, 1], values: depthwiseKernel),
                                                              pointwiseKernel: Tensor(shape: [1, 1, c, out], values: pointwiseKernel),
                                                              bias: Tensor(bias), strides: [stride, stride], padding: .valid))
                default:
                    op = .conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel), bias: Tensor(bias),
                                            strides: [stride, stride], padding: .valid))
                }
                let graph = try Graph.sequential(name: "p", inputShape: [h, w, c], layers: [("pad", .zeroPadding2d(pads)), ("conv", op)])
                let executor = try Executor(graph: graph)
                XCTAssertFalse(executor.stepProfile.contains { $0.operation == "zeroPad" }, "the padding is folded")
                let batch = 2
                let input = random.floats(batch * h * w * c, in: -1...1)
                let y = try executor.run(input)
                XCTAssertEqual(y.count, batch * executor.outputSize)
                for b in 0..<batch {
                    let x = padded(input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init))
                    let expected: [Double]
                    switch kind {
                    case "conv":
                        expected = ReferenceOps.conv2d(x, h: ph, w: pw, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias,
                                                       stride: [stride, stride], dilation: [1, 1], same: false, groups: 1).values
                    default:
                        let (d, oh, ow) = ReferenceOps.depthwise(x, h: ph, w: pw, c: c, kernel: depthwiseKernel, kh: 3, kw: 3, multiplier: 1,
                                                                 bias: nil, stride: [stride, stride], dilation: [1, 1], same: false)
                        expected = kind == "depthwise" ? d
                            : ReferenceOps.conv2d(d, h: oh, w: ow, c: c, kernel: pointwiseKernel, kh: 1, kw: 1, out: out, bias: bias,
                                                  stride: [1, 1], dilation: [1, 1], same: false, groups: 1).values
                    }
                    XCTAssertEqual(expected.count, executor.outputSize)
                    for (k, e) in expected.enumerated() {
                        XCTAssertEqual(Double(y[b * executor.outputSize + k]), e, accuracy: 1e-5, "\(kind) stride \(stride) k\(k)")
                    }
                }
            }
        }
    }

    func testZeroPaddingFoldsIntoAMaxPoolingOfNonNegativeValues() throws {
        let (h, w, c) = (11, 10, 3)
        // fill: the border's value (-inf: an ONNX MaxPool's pads, folded whatever the values).
        for (activation, pads, size, folded, fill) in [(Activation.relu, [1, 1, 1, 1], 3, true, Float(0)), (.relu6, [1, 2, 0, 1], 3, true, 0),
                                                        (.sigmoid, [2, 0, 1, 1], 3, true, 0), (.linear, [1, 1, 1, 1], 3, false, 0),
                                                        (.relu, [2, 0, 2, 0], 2, false, 0), (.relu, [0, 3, 0, 0], 2, false, 0),
                                                        (.linear, [1, 1, 1, 1], 3, true, -.infinity), (.linear, [1, 2, 0, 1], 3, true, -.infinity),
                                                        (.linear, [2, 0, 2, 0], 2, false, -.infinity)] {
            let (ph, pw) = (h + pads[0] + pads[1], w + pads[2] + pads[3])
            let graph = try Graph.sequential(name: "p", inputShape: [h, w, c], layers: [
                ("act", .activation(activation)), ("pad", fill == 0 ? .zeroPadding2d(pads) : .pad2d(pads: pads, value: fill)),
                ("pool", .pool2d(try Pool2D(kind: .max, size: [size, size], strides: [2, 2], padding: .valid))),
            ])
            let input = random.floats(2 * h * w * c, in: -2...2)
            let executor = try Executor(graph: graph)
            XCTAssertEqual(executor.stepProfile.contains { $0.operation == "zeroPad" }, !folded, "\(activation) \(pads)")
            for threads in [1, 2] {
                // Two threads on one image at a time: the pooling split by output rows.
                var y: [Float] = []
                for b in 0..<2 {
                    let image = Array(input[(b * h * w * c)..<((b + 1) * h * w * c)])
                    y += try executor.run(image, threads: threads)
                }
                let (oh, ow) = ((ph - size) / 2 + 1, (pw - size) / 2 + 1)
                XCTAssertEqual(y.count, 2 * oh * ow * c)
                for b in 0..<2 {
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            for k in 0..<c {
                                var expected = -Double.infinity
                                for ky in 0..<size {
                                    for kx in 0..<size {
                                        let (iy, ix) = (oy * 2 + ky - pads[0], ox * 2 + kx - pads[2])
                                        guard iy >= 0, iy < h, ix >= 0, ix < w else { expected = max(expected, Double(fill)); continue }
                                        let x = Double(input[((b * h + iy) * w + ix) * c + k])
                                        let formula = Self.formulas.first { $0.0 == activation }?.1
                                        expected = max(expected, formula.map { $0(x) } ?? x)
                                    }
                                }
                                let got = Double(y[((b * oh + oy) * ow + ox) * c + k])
                                // A window of border only (not folded): -inf itself.
                                XCTAssertTrue(got == expected || abs(got - expected) <= 1e-6,
                                              "\(activation) \(pads) threads \(threads) [\(b), \(oy), \(ox), \(k)]: \(got) vs \(expected)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// A ReLU read only by a depthwise or separable conv (directly, or through a zero padding
    /// folded into it) is applied as the conv loads its input: no ReLU step, and every value the
    /// one the separate ReLU gives, bit for bit (NaN and -0 in the input included), on one thread
    /// and with one image split across two; a ReLU with a second reader, or observed, stays a
    /// step. The shapes reach each path of the kernel: the unrolled 3×3/5×5 rows at strides 1
    /// and 2 (full and masked channel blocks), the four-pixel interior (4×4, dilation), border
    /// pixels, and a depth multiplier.
    func testReLUBeforeDepthwiseOrSeparableIsAppliedAsTheConvReads() throws {
        let cases: [(h: Int, w: Int, c: Int, k: Int, stride: Int, dilation: Int, multiplier: Int, pad: Bool, separable: Bool)] = [
            (12, 21, 40, 3, 1, 1, 1, false, false),
            (13, 19, 20, 5, 2, 1, 1, true, false),
            (11, 22, 37, 3, 2, 1, 1, true, true),
            (10, 17, 24, 5, 1, 1, 1, false, true),
            (12, 14, 18, 4, 1, 1, 1, false, true),
            (11, 15, 9, 3, 1, 2, 1, false, false),
            (9, 10, 6, 3, 1, 1, 2, true, true),
            (4, 6, 280, 3, 1, 1, 1, true, true),
        ]
        for t in cases {
            let kernel = random.floats(t.k * t.k * t.c * t.multiplier, in: -1...1)
            // Many outputs from a map of five rows (fewer than three a thread): the pointwise columns shared by two threads.
            let units = t.separable && t.c >= 200 ? 80 : 11
            let pointwise = random.floats(t.c * t.multiplier * units, in: -1...1), bias = random.floats(units, in: -1...1)
            let padding: Padding = t.pad ? .valid : .same
            let conv: Op = t.separable
                ? .separableConv2d(try SeparableConv2D(depthwiseKernel: Tensor(shape: [t.k, t.k, t.c, t.multiplier], values: kernel),
                                                       pointwiseKernel: Tensor(shape: [1, 1, t.c * t.multiplier, units], values: pointwise),
                                                       bias: Tensor(bias), strides: [t.stride, t.stride], padding: padding))
                : .depthwiseConv2d(try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.c, t.multiplier], values: kernel), bias: nil,
                                                       strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: padding))
            var layers: [(String, Op)] = [("relu", .activation(.relu))]
            if t.pad { layers.append(("pad", .zeroPadding2d([1, 2, 2, 1]))) }
            layers += [("conv", conv), ("after", .activation(.relu))]
            let graph = try Graph.sequential(name: "r", inputShape: [t.h, t.w, t.c], layers: layers)
            let fused = try Executor(graph: graph), separate = try Executor(graph: graph, observing: ["relu"])
            XCTAssertFalse(fused.stepProfile.contains { $0.operation == "activation" }, "\(t): both ReLUs fused")
            XCTAssertTrue(separate.stepProfile.contains { $0.operation == "activation" }, "\(t): an observed ReLU is a step")
            var input = random.floats(2 * t.h * t.w * t.c, in: -2...2)
            for i in stride(from: 5, to: input.count, by: 97) { input[i] = i % 2 == 0 ? .nan : -0.0 }
            let image = Array(input[0..<(t.h * t.w * t.c)])
            for threads in [1, 2] {
                XCTAssertEqual(try fused.run(image, threads: threads).map(\.bitPattern), try separate.run(image, threads: threads).map(\.bitPattern),
                               "\(t) threads \(threads)")
            }
            XCTAssertEqual(try fused.run(image, threads: 2).map(\.bitPattern), try fused.run(image, threads: 1).map(\.bitPattern),
                           "\(t): one image split across two threads")
            let y = try fused.run(input)
            XCTAssertEqual(y.map(\.bitPattern), try separate.run(input).map(\.bitPattern), "\(t) batch 2")
            // And the definition: the conv of max(x, 0), then the ReLU.
            for b in 0..<2 {
                var x = input[(b * t.h * t.w * t.c)..<((b + 1) * t.h * t.w * t.c)].map { $0.isNaN ? 0 : max(Double($0), 0) }
                var (h, w) = (t.h, t.w)
                if t.pad {
                    let (ph, pw) = (h + 3, w + 3)
                    var padded = [Double](repeating: 0, count: ph * pw * t.c)
                    for i in 0..<h { for j in 0..<w { for k in 0..<t.c { padded[((i + 1) * pw + j + 2) * t.c + k] = x[(i * w + j) * t.c + k] } } }
                    (x, h, w) = (padded, ph, pw)
                }
                let d = ReferenceOps.depthwise(x, h: h, w: w, c: t.c, kernel: kernel, kh: t.k, kw: t.k, multiplier: t.multiplier, bias: nil,
                                               stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: !t.pad)
                let expected = t.separable
                    ? ReferenceOps.conv2d(d.values, h: d.1, w: d.2, c: t.c * t.multiplier, kernel: pointwise, kh: 1, kw: 1, out: units,
                                          bias: bias, stride: [1, 1], dilation: [1, 1], same: false, groups: 1).values
                    : d.values
                XCTAssertEqual(expected.count, fused.outputSize, "\(t)")
                // float32 sums of 280 products of terms up to about 4 (cancelling) err by more than 1e-5.
                let tolerance = t.c * t.multiplier > 64 ? 1e-4 : 1e-5
                for (k, e) in expected.enumerated() {
                    XCTAssertEqual(Double(y[b * fused.outputSize + k]), max(e, 0), accuracy: tolerance * max(1, abs(e)), "\(t) [\(b), \(k)]")
                }
            }
        }
        // A second reader keeps the ReLU a step (its values are needed as such).
        let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 4, 1], values: random.floats(36, in: -1...1)), bias: nil,
                                     strides: [1, 1], padding: .same)
        let graph = try Graph(name: "two", nodes: [
            Node(name: "x", operation: .input(shape: [6, 6, 4]), inputs: []),
            Node(name: "relu", operation: .activation(.relu), inputs: ["x"]),
            Node(name: "dw", operation: .depthwiseConv2d(dw), inputs: ["relu"]),
            Node(name: "sum", operation: .add, inputs: ["dw", "relu"]),
        ], outputs: ["sum"])
        XCTAssertTrue(try Executor(graph: graph).stepProfile.contains { $0.operation == "activation" })
    }

    /// A Concatenate whose every reader is the same element-wise activation (NASNet's cell
    /// outputs read by two ReLUs) applies it as it copies, the readers of the activations reading
    /// the concatenation: no activation step, the values of the separate steps bit for bit (NaN
    /// and -0 in the input included), one and two threads. Mixed readers, different
    /// activations, or an observed activation keep the steps.
    func testActivationsOfAConcatenationAppliedAsItCopies() throws {
        let (h, w, c, units) = (7, 9, 6, 4)
        let pointwise = try Conv2D(kernel: Tensor(shape: [1, 1, c, 5], values: random.floats(c * 5, in: -1...1)),
                                   bias: Tensor(random.floats(5, in: -1...1)), padding: .valid)
        let head = try Conv2D(kernel: Tensor(shape: [1, 1, c + 5, units], values: random.floats((c + 5) * units, in: -1...1)),
                              bias: nil, padding: .valid)
        let separable = try SeparableConv2D(depthwiseKernel: Tensor(shape: [3, 3, c + 5, 1], values: random.floats(9 * (c + 5), in: -1...1)),
                                            pointwiseKernel: Tensor(shape: [1, 1, c + 5, units],
                                                                    values: random.floats((c + 5) * units, in: -1...1)),
                                            bias: nil, strides: [1, 1], padding: .same)
        func graph(_ first: Op, _ second: Op) throws -> Graph {
            try Graph(name: "cat", nodes: [
                Node(name: "x", operation: .input(shape: [h, w, c]), inputs: []),
                Node(name: "a", operation: .conv2d(pointwise), inputs: ["x"]),
                Node(name: "cat", operation: .concatenate(axis: 2), inputs: ["a", "x"]),
                Node(name: "r1", operation: first, inputs: ["cat"]),
                Node(name: "r2", operation: second, inputs: ["cat"]),
                Node(name: "c1", operation: .conv2d(head), inputs: ["r1"]),
                Node(name: "c2", operation: .separableConv2d(separable), inputs: ["r2"]),
                Node(name: "sum", operation: .add, inputs: ["c1", "c2"]),
            ], outputs: ["sum"])
        }
        var input = random.floats(2 * h * w * c, in: -2...2)
        for i in stride(from: 3, to: input.count, by: 41) { input[i] = i % 2 == 0 ? .nan : -0.0 }
        for (first, second, fused) in [(Op.activation(.relu), Op.activation(.relu), true), (.activation(.relu6), .activation(.relu6), true),
                                       (.activation(.swish), .activation(.swish), true), (.activation(.relu), .activation(.relu6), false),
                                       (.activation(.relu), .identity, false)] {
            let g = try graph(first, second)
            let executor = try Executor(graph: g), separate = try Executor(graph: g, observing: ["cat"])
            let activations = { (e: Executor) in e.stepProfile.filter { $0.operation == "activation" }.count }
            XCTAssertEqual(activations(executor), fused ? 0 : 2 - (second == .identity ? 1 : 0), "\(first) \(second)")
            XCTAssertGreaterThan(activations(separate), 0, "\(first) \(second): observed, the steps stay")
            // r1 observed: no fusion into the concatenation (a ReLU before the separable conv is still read through it).
            XCTAssertEqual(activations(try Executor(graph: g, observing: ["r1"])), fused ? (second == .activation(.relu) ? 1 : 2)
                           : activations(executor), "\(first) \(second)")
            for threads in [1, 2] {
                XCTAssertEqual(try executor.run(input, threads: threads).map(\.bitPattern),
                               try separate.run(input, threads: threads).map(\.bitPattern), "\(first) \(second) threads \(threads)")
            }
        }
    }

    /// A BatchNormalization no conv absorbs (after a Concatenate: DenseNet's BN, ReLU, 1×1 conv)
    /// or an Affine applies the activation after it as it scales: no activation step, the values
    /// of the separate steps bit for bit (NaN and -0 in the input included), one and two threads,
    /// with many channels (the vectorized kernel) and with three (the repeated pattern), for
    /// activations the element-wise kernels compute and for one they do not (tanh). With the
    /// batch's statistics (recalibration) the steps stay apart.
    func testActivationAfterABatchNormAppliedAsItScales() throws {
        for c in [3, 24] {
            let (h, w) = (5, 7), width = 2 * c
            let pointwise = try Conv2D(kernel: Tensor(shape: [1, 1, c, c], values: random.floats(c * c, in: -1...1)),
                                       bias: Tensor(random.floats(c, in: -1...1)), padding: .valid)
            let head = try Conv2D(kernel: Tensor(shape: [1, 1, width, 4], values: random.floats(width * 4, in: -1...1)),
                                  bias: nil, padding: .valid)
            let bn = try BatchNorm(gamma: Tensor(random.floats(width, in: 0.5...1.5)), beta: Tensor(random.floats(width, in: -0.5...0.5)),
                                   movingMean: Tensor(random.floats(width, in: -0.5...0.5)),
                                   movingVariance: Tensor(random.floats(width, in: 0.5...2)), epsilon: 1e-3)
            let affine = try Affine(scale: Tensor(random.floats(width, in: -1.5...1.5)), shift: Tensor(random.floats(width, in: -1...1)))
            var input = random.floats(2 * h * w * c, in: -3...3)
            for i in stride(from: 5, to: input.count, by: 37) { input[i] = i % 2 == 0 ? .nan : -0.0 }
            for (label, normalization) in [("BatchNorm", Op.batchNorm(bn)), ("Affine", .affine(affine))] {
                for activation in [Activation.relu, .relu6, .swish, .tanh] {
                    let graph = try Graph(name: "dense", nodes: [
                        Node(name: "x", operation: .input(shape: [h, w, c]), inputs: []),
                        Node(name: "a", operation: .conv2d(pointwise), inputs: ["x"]),
                        Node(name: "cat", operation: .concatenate(axis: 2), inputs: ["x", "a"]),
                        Node(name: "bn", operation: normalization, inputs: ["cat"]),
                        Node(name: "act", operation: .activation(activation), inputs: ["bn"]),
                        Node(name: "out", operation: .conv2d(head), inputs: ["act"]),
                    ], outputs: ["out"])
                    let name = "\(c) channels, \(label), \(activation)"
                    let fused = try Executor(graph: graph), separate = try Executor(graph: graph, observing: ["bn"])
                    XCTAssertFalse(fused.stepProfile.contains { $0.operation == "activation" }, name)
                    XCTAssertTrue(separate.stepProfile.contains { $0.operation == "activation" }, name)
                    for threads in [1, 2] {
                        XCTAssertEqual(try fused.run(input, threads: threads).map(\.bitPattern),
                                       try separate.run(input, threads: threads).map(\.bitPattern), "\(name), \(threads) threads")
                    }
                    if case .batchNorm = normalization {
                        let recalibrating = try Executor(graph: graph, batchNormStatistics: .batch)
                        XCTAssertTrue(recalibrating.stepProfile.contains { $0.operation == "activation" }, name)
                    }
                }
            }
        }
    }

    /// A conv read by several activations, all the same, applies it once as it writes (the
    /// others read that buffer); a max pooling reading one of them is then not fused into the
    /// conv (the activated map must exist for the others). Bit for bit the separate steps' values.
    func testSeveralReadersOfOneActivationShareTheFusedStep() throws {
        let (h, w) = (8, 10)
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, 1, 4], values: random.floats(36, in: -1...1)),
                              bias: Tensor(random.floats(4, in: -1...1)), padding: .same)
        let pool = { (kind: Pool2D.Kind) in Op.pool2d(try Pool2D(kind: kind, size: [2, 2], strides: [2, 2], padding: .valid)) }
        for (first, second, fused) in [(Activation.relu, Activation.relu, true), (.sigmoid, .sigmoid, true), (.relu, .sigmoid, false)] {
            let g = try Graph(name: "fan", nodes: [
                Node(name: "x", operation: .input(shape: [h, w, 1]), inputs: []),
                Node(name: "conv", operation: .conv2d(conv), inputs: ["x"]),
                Node(name: "r1", operation: .activation(first), inputs: ["conv"]),
                Node(name: "r2", operation: .activation(second), inputs: ["conv"]),
                Node(name: "p1", operation: try pool(.max), inputs: ["r1"]),
                Node(name: "p2", operation: try pool(.average), inputs: ["r2"]),
                Node(name: "sum", operation: .add, inputs: ["p1", "p2"]),
            ], outputs: ["sum"])
            let executor = try Executor(graph: g), separate = try Executor(graph: g, observing: ["conv"])
            XCTAssertEqual(executor.stepProfile.filter { $0.operation == "activation" }.count, fused ? 0 : 2, "\(first) \(second)")
            XCTAssertEqual(separate.stepProfile.filter { $0.operation == "activation" }.count, 2)
            let input = random.floats(3 * h * w, in: -2...2)
            XCTAssertEqual(try executor.run(input).map(\.bitPattern), try separate.run(input).map(\.bitPattern), "\(first) \(second)")
        }
    }

    /// Depthwise rows of every width from 1 to 21 — groups of 8 (AVX2: 4) pixels, the rest as the
    /// row's last 8, 4 or 2 pixels (overlapping the groups before), rows shorter than a group in
    /// groups of 4 and 2 — and border pixels with only the taps inside the image (up to 8 vectors
    /// of channels at a time), with and without a ReLU read through: against the reference, and
    /// AVX-512 and AVX2 bit for bit (the same FMAs in the same order).
    func testDepthwiseRowWidthsAndBordersAgreeAcrossInstructionSets() throws {
        defer { Kernels.limitInstructionSet(2) }
        let h = 5
        for w in 1...21 {
            // Channels: one vector, a partial one, several with a partial last (37, 100), whole blocks of 8 and 4 (64, 136).
            for (k, stride, dilation, c) in [(3, 1, 1, 16), (5, 1, 1, 20), (3, 2, 1, 100), (5, 2, 1, 64), (3, 1, 2, 37), (3, 1, 1, 136), (7, 1, 1, 24)] {
                let reluInput = (w + k) % 2 == 0
                let kernel = random.floats(k * k * c, in: -1...1), bias = random.floats(c, in: -1...1)
                let conv = try DepthwiseConv2D(kernel: Tensor(shape: [k, k, c, 1], values: kernel), bias: Tensor(bias),
                                               strides: [stride, stride], dilation: [dilation, dilation], padding: .same)
                let layers: [(String, Op)] = (reluInput ? [("relu", .activation(.relu))] : []) + [("dw", .depthwiseConv2d(conv))]
                let executor = try Executor(graph: try Graph.sequential(name: "w", inputShape: [h, w, c], layers: layers))
                let input = random.floats(h * w * c, in: -2...2)
                var outputs: [[Float]] = []
                for level in [2, 1] {
                    Kernels.limitInstructionSet(level)
                    outputs.append(try executor.run(input))
                }
                let name = "w \(w) k \(k) stride \(stride) dilation \(dilation) c \(c) relu \(reluInput)"
                XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern), "\(name): AVX-512 and AVX2")
                let x = input.map { reluInput ? max(Double($0), 0) : Double($0) }
                let expected = ReferenceOps.depthwise(x, h: h, w: w, c: c, kernel: kernel, kh: k, kw: k, multiplier: 1, bias: bias,
                                                      stride: [stride, stride], dilation: [dilation, dilation], same: true).values
                XCTAssertEqual(expected.count, outputs[0].count, name)
                for (i, e) in expected.enumerated() {
                    XCTAssertEqual(Double(outputs[0][i]), e, accuracy: 1e-5 * max(1, abs(e)), "\(name) [\(i)]")
                }
            }
        }
    }

    /// The small-map depthwise kernel (channel blocks outermost, each block's window grid in an L1
    /// tile, P pixels at a time across rows): maps where it runs (and two where it must not), any
    /// window, stride and dilation, a masked last block, a ReLU read through, ReLU6 at the store
    /// and an activation after; against the reference at every level, and AVX-512 and AVX2 bit for
    /// bit; one and two threads (each thread's rows its own smaller map) the same values.
    func testDepthwiseSmallMapsAgreeAcrossLevelsAndThreads() throws {
        defer { Kernels.limitInstructionSet(2) }
        let cases: [(h: Int, w: Int, c: Int, k: Int, stride: Int, dilation: Int, activation: Activation, small: Bool)] = [
            (6, 6, 40, 5, 1, 1, .relu6, true),       // MnasNet's 6×6 5×5 maps: 4 interior pixels of 36
            (3, 3, 37, 3, 1, 1, .linear, true),      // fewer pixels than a group, a masked block
            (7, 7, 24, 7, 1, 1, .gelu(approximate: false), true),  // ConvNeXt 224's last stage
            (9, 9, 20, 5, 2, 1, .relu, true),        // stride 2
            (9, 7, 16, 3, 1, 2, .swish, true),       // dilation 2
            (14, 14, 136, 5, 1, 1, .relu6, true),    // most columns interior, but the row kernels' rows spill L1
            (6, 6, 20, 5, 2, 1, .relu, false),       // stride 2 onto 3×3: the copy outweighs the gain
            (5, 11, 8, 3, 2, 1, .hardSwish, false),
            (8, 8, 520, 3, 1, 1, .relu6, false),     // 3×3 with most columns interior: the row kernels
            (3, 3, 48, 5, 1, 1, .relu, false),       // 36% of the taps inside: the clipped path
            (24, 24, 24, 3, 1, 1, .relu, false),     // a tile past 400 vectors
        ]
        for t in cases {
            let pad = (t.k - 1) * t.dilation / 2
            let oh = (t.h + 2 * pad - (t.k - 1) * t.dilation - 1) / t.stride + 1, ow = (t.w + 2 * pad - (t.k - 1) * t.dilation - 1) / t.stride + 1
            XCTAssertEqual(bnk_depthwise_small_map(Int32(t.h), Int32(t.w), Int32(t.c), Int32(t.k), Int32(t.k), Int32(t.stride), Int32(t.stride),
                                                   Int32(t.dilation), Int32(t.dilation), Int32(pad), Int32(pad), Int32(oh), Int32(ow)) != 0,
                           t.small, "\(t): the small-map kernel")
            let reluInput = t.k != 7
            let kernel = random.floats(t.k * t.k * t.c, in: -1...1), bias = random.floats(t.c, in: -1...1)
            let conv = try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.c, 1], values: kernel), bias: Tensor(bias),
                                           strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: .same)
            let layers: [(String, Op)] = (reluInput ? [("relu", .activation(.relu))] : [])
                + [("dw", .depthwiseConv2d(conv)), ("act", .activation(t.activation))]
            let graph = try Graph.sequential(name: "small", inputShape: [t.h, t.w, t.c], layers: layers)
            let one = try Executor(graph: graph)
            let batch = 2
            let input = random.floats(batch * t.h * t.w * t.c, in: -2...2)
            var outputs: [[Float]] = []
            for level in [2, 1, 0] {
                Kernels.limitInstructionSet(level)
                let y = try one.run(input)
                XCTAssertEqual(try one.run(input, threads: 2).map(\.bitPattern), y.map(\.bitPattern), "\(t) level \(level): two threads")
                outputs.append(y)
            }
            if [.linear, .relu, .relu6].contains(t.activation) {    // the others' vector versions may differ in the last bit
                XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern), "\(t): AVX-512 and AVX2")
            }
            let formula = Self.formulas.first { $0.0 == t.activation }?.1 ?? { $0 }
            for (level, y) in zip([2, 1, 0], outputs) {
                for b in 0..<batch {
                    let x = input[(b * t.h * t.w * t.c)..<((b + 1) * t.h * t.w * t.c)].map { reluInput ? max(Double($0), 0) : Double($0) }
                    let expected = ReferenceOps.depthwise(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: t.k, kw: t.k, multiplier: 1, bias: bias,
                                                          stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: true).values
                    XCTAssertEqual(expected.count, one.outputSize, "\(t)")
                    for (i, e) in expected.enumerated() {
                        XCTAssertEqual(Double(y[b * one.outputSize + i]), formula(e), accuracy: 1e-5 * max(1, abs(e)), "\(t) level \(level) [\(i)]")
                    }
                }
            }
        }
    }

    /// The depthwise row kernels with and without their prefetches (`BNK_DW_PREFETCH`: AVX-512
    /// and AVX2 have both versions, the portable kernel never prefetches): at every level the
    /// same values bit for bit, for 3×3 and 5×5 at strides 1 and 2 and 7×7 (each its own instantiation),
    /// a ReLU read through and ReLU6 at the store, and the reference's within rounding.
    func testDepthwiseWithAndWithoutPrefetchesGivesTheSameValues() throws {
        defer { Kernels.limitInstructionSet(2) }
        let (h, w, c) = (11, 23, 40)    // odd sides: "same" pads k / 2 on every side at strides 1 and 2
        for (k, stride) in [(3, 1), (3, 2), (5, 1), (5, 2), (7, 1)] {
            let pad = k / 2, oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1
            let x = random.floats(h * w * c, in: -2...2), kernel = random.floats(k * k * c, in: -1...1), bias = random.floats(c, in: -1...1)
            let expected = ReferenceOps.depthwise(x.map { max(Double($0), 0) }, h: h, w: w, c: c, kernel: kernel, kh: k, kw: k, multiplier: 1,
                                                  bias: bias, stride: [stride, stride], dilation: [1, 1], same: true).values
            for level in [2, 1, 0] {
                Kernels.limitInstructionSet(level)
                var outputs: [[Float]] = []
                for prefetch in [0, Int32(BNK_DW_PREFETCH)] {
                    var y = [Float](repeating: .nan, count: oh * ow * c)
                    bnk_depthwise_conv2d(x, Int32(h), Int32(w), Int32(c), 1, Int32(k), Int32(k), Int32(stride), Int32(stride), 1, 1,
                                         Int32(pad), Int32(pad), Int32(oh), Int32(ow), kernel, bias, &y,
                                         Int32(BNK_ACT_RELU6) | Int32(BNK_DW_RELU_INPUT) | prefetch)
                    outputs.append(y)
                }
                let name = "\(k)x\(k) stride \(stride) level \(level)"
                let differing = zip(outputs[0], outputs[1]).filter { $0.bitPattern != $1.bitPattern }.count
                XCTAssertEqual(differing, 0, "\(name): values differing with and without prefetches")
                XCTAssertEqual(expected.count, outputs[1].count, name)
                for (i, e) in expected.enumerated() {
                    XCTAssertEqual(Double(outputs[1][i]), min(max(e, 0), 6), accuracy: 1e-5 * max(1, abs(e)), "\(name) [\(i)]")
                }
            }
        }
    }

    /// Depthwise convolutions with a multiplier of 1: border pixels one at a time, the interior
    /// four at a time (in channel slabs on wide rows), ReLU/ReLU6 at the store, other activations
    /// after; against the reference.
    func testDepthwiseInteriorBorderAndActivations() throws {
        let cases: [(h: Int, w: Int, c: Int, k: Int, stride: Int, dilation: Int, same: Bool, activation: Activation)] = [
            (9, 19, 20, 3, 1, 1, true, .relu6),     // groups of four, a remainder, a masked channel block
            (12, 13, 33, 5, 2, 1, true, .relu),     // 5×5, stride 2, uneven padding
            (11, 17, 7, 3, 1, 2, false, .swish),    // dilation, valid padding, an activation applied after
            (5, 6, 16, 3, 1, 1, true, .linear),     // narrow: almost every pixel is a border pixel
            (10, 23, 40, 5, 1, 1, true, .relu6),    // 5×5 stride 1: the unrolled row kernel, four pixels and a remainder
            (8, 30, 37, 3, 1, 1, false, .relu),     // 3×3 stride 1, valid: every row inside, eight pixels at a time, a masked block
            (9, 14, 24, 3, 1, 1, true, .swish),     // the row kernels, the activation applied row by row after each row
            (7, 11, 19, 5, 1, 1, true, .hardSwish),
            (8, 9, 16, 3, 2, 1, true, .sigmoid),
            (9, 37, 24, 3, 2, 1, true, .relu6),     // 3×3 stride 2: the row kernel, eight (AVX2: four) pixels at a time and a remainder
            (11, 27, 20, 5, 2, 1, false, .swish),   // 5×5 stride 2, valid: every pixel inside, four at a time
            (13, 29, 40, 7, 1, 1, true, .gelu(approximate: false)),  // 7×7 (ConvNeXt's): eight pixels, a remainder, a masked block
            (9, 20, 16, 7, 1, 1, false, .relu),     // 7×7 valid: every row inside
            // Channel slabs (rows of more than 16 KB a window): 3 slabs of 16 over bands of 10
            // rows, swish after each band; 5×5 in slabs of 16, the last one 4 channels (masked).
            (25, 64, 48, 3, 1, 1, true, .swish),
            (12, 40, 100, 5, 1, 1, true, .relu6),
        ]
        for t in cases {
            let kernel = random.floats(t.k * t.k * t.c, in: -1...1), bias = random.floats(t.c, in: -1...1)
            let conv = try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.c, 1], values: kernel), bias: Tensor(bias),
                                           strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: t.same ? .same : .valid)
            let graph = try Graph.sequential(name: "dw", inputShape: [t.h, t.w, t.c],
                                             layers: [("dw", .depthwiseConv2d(conv)), ("act", .activation(t.activation))])
            let executor = try Executor(graph: graph)
            let batch = 2
            let input = random.floats(batch * t.h * t.w * t.c, in: -2...2)
            let y = try executor.run(input)
            let formula = Self.formulas.first { $0.0 == t.activation }?.1 ?? { $0 }
            for b in 0..<batch {
                let x = input[(b * t.h * t.w * t.c)..<((b + 1) * t.h * t.w * t.c)].map(Double.init)
                let expected = ReferenceOps.depthwise(x, h: t.h, w: t.w, c: t.c, kernel: kernel, kh: t.k, kw: t.k, multiplier: 1, bias: bias,
                                                      stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation], same: t.same).values
                XCTAssertEqual(expected.count, executor.outputSize)
                for (k, e) in expected.enumerated() {
                    XCTAssertEqual(Double(y[b * executor.outputSize + k]), formula(e), accuracy: 1e-5 * max(1, abs(e)), "\(t) k\(k)")
                }
            }
        }
    }

    /// The GEMM's packed panels (many rows), column tails at 16 and 32, and products split by
    /// columns (`bnk_gemm_strided`, as threads share one): the same values as the whole product,
    /// bit for bit, and the reference's within rounding.
    func testGEMMPanelsTailsAndColumnBlocks() {
        // (29, 24, 27) and (7, 30, 9): 17 to 32 columns over a short sum, B packed and read in place.
        for (m, n, k) in [(50, 37, 5), (25, 70, 300), (13, 96, 64), (1, 1000, 40), (97, 16, 9), (36, 8, 130), (29, 24, 27), (7, 30, 9)] {
            let a = random.floats(m * k, in: -1...1), b = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
            for act in [BNK_ACT_LINEAR, BNK_ACT_RELU, BNK_ACT_RELU6, BNK_ACT_SIGMOID] {
                var whole = [Float](repeating: .nan, count: m * n), reference = whole, blocks = whole
                bnk_gemm(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &whole, Int32(n), Int32(act))
                bnk_gemm_reference(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &reference, Int32(n), Int32(act))
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        bias.withUnsafeBufferPointer { bias in
                            blocks.withUnsafeMutableBufferPointer { c in
                                var n0 = 0
                                for width in [16, 5, 32, 48, 1, 1000] where n0 < n {
                                    let cols = min(width, n - n0)
                                    bnk_gemm_strided(Int32(m), Int32(cols), Int32(k), a.baseAddress!, Int32(k), b.baseAddress! + n0, Int32(n),
                                                     bias.baseAddress! + n0, c.baseAddress! + n0, Int32(n), Int32(act))
                                    n0 += cols
                                }
                            }
                        }
                    }
                }
                XCTAssertEqual(blocks, whole, "\(m)×\(n)×\(k) act \(act): column blocks")
                for i in 0..<(m * n) {
                    XCTAssertEqual(whole[i], reference[i], accuracy: 2e-5 * Float(k).squareRoot() * max(1, abs(reference[i])),
                                   "\(m)×\(n)×\(k) act \(act) [\(i)]")
                }
            }
        }
    }

    /// Pointwise convs on prepacked panels apply sigmoid, swish and hard-swish to each chunk
    /// of rows as it is stored (96 rows when the panels are small, all rows when they are
    /// large): the formula's values, over several chunks and a ragged last one.
    func testPointwiseConvActivationsAppliedByTheGEMM() throws {
        for (side, cin, cout) in [(13, 24, 40), (5, 300, 130)] {  // 169 pixels, small panels; large panels
            for (activation, formula) in Self.formulas where [.sigmoid, .swish, .hardSwish, .relu6].contains(activation) {
                let kernel = random.floats(cin * cout, in: -0.3...0.3), bias = random.floats(cout, in: -1...1)
                let conv = try Conv2D(kernel: Tensor(shape: [1, 1, cin, cout], values: kernel), bias: Tensor(bias), padding: .valid,
                                      activation: activation)
                let graph = try Graph.sequential(name: "pw", inputShape: [side, side, cin], layers: [("pw", .conv2d(conv))])
                let input = random.floats(2 * side * side * cin, in: -2...2)
                let y = try Executor(graph: graph).run(input)
                for p in 0..<(2 * side * side) {
                    for o in 0..<cout {
                        var e = Double(bias[o])
                        for i in 0..<cin { e += Double(input[p * cin + i]) * Double(kernel[i * cout + o]) }
                        XCTAssertEqual(Double(y[p * cout + o]), formula(e), accuracy: 1e-5 * max(1, abs(e)), "\(activation) \(side) p\(p) o\(o)")
                    }
                }
            }
        }
    }

    /// Every row count a call can have (the microkernels split rows into even blocks of up to
    /// 12 at AVX-512, 6 at AVX2 and 8 for an AVX2 block of at most 8 columns, one tile per block
    /// size): each row's sums do not depend on the rows beside it, so the whole product equals the
    /// product row by row, bit for bit, for 32-column and narrower blocks, and the reference's
    /// within rounding.
    func testEveryRowBlockSizeGivesTheRowBySumsOfOneRow() {
        // A 32-column block and a 13-column one; two 16-column blocks and an 8-column one (AVX2's
        // 8-row tile); and with a K whose 64 columns of panels are over 1 MiB, 7 to 10 rows (one
        // 12-row tile) go in 32-column blocks, one row in 64 (AVX-512).
        // A 24-column block over a sum of 27 (AVX-512: 6-row tiles of two vectors, the second masked).
        for (n, k) in [(45, 70), (40, 50), (80, 4200), (24, 27)] { everyRowBlockSizeGivesTheRowBySumsOfOneRow(n: n, k: k) }
    }

    private func everyRowBlockSizeGivesTheRowBySumsOfOneRow(n: Int, k: Int) {
        let b = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
        var panels = [Float](repeating: .nan, count: bnk_panels_floats(Int32(k), Int32(n)))
        bnk_pack_panels(Int32(k), Int32(n), b, Int32(n), &panels)
        for m in 1...27 {
            let a = random.floats(m * k, in: -1...1), residual = random.floats(m * n, in: -1...1)
            var whole = [Float](repeating: .nan, count: m * n), byRow = whole, reference = whole
            bnk_gemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(k), panels, bias, residual, &whole, Int32(n), Int32(BNK_ACT_RELU6))
            a.withUnsafeBufferPointer { a in
                residual.withUnsafeBufferPointer { r in
                    byRow.withUnsafeMutableBufferPointer { c in
                        for row in 0..<m {
                            bnk_gemm_panels(1, Int32(n), Int32(k), a.baseAddress! + row * k, Int32(k), panels, bias, r.baseAddress! + row * n,
                                            c.baseAddress! + row * n, Int32(n), Int32(BNK_ACT_RELU6))
                        }
                    }
                }
            }
            XCTAssertEqual(whole.map(\.bitPattern), byRow.map(\.bitPattern), "\(m) rows")
            bnk_gemm_reference(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &reference, Int32(n), Int32(BNK_ACT_LINEAR))
            for i in 0..<(m * n) {
                let expected = min(max(reference[i] + residual[i], 0), 6)
                XCTAssertEqual(whole[i], expected, accuracy: 2e-5 * Float(k).squareRoot() * max(1, abs(expected)), "\(m) rows [\(i)]")
            }
        }
    }

    /// The row chunks of a GEMM over large panels follow the L2 (`bnk_l2_bytes`): an A of 1.25 MB
    /// goes whole with 1 MiB of L2 (up to 2 MiB whole) and in chunks with 512 KiB (up to 1 MiB),
    /// the same values bit for bit either way, with a residual and ReLU6, and the reference's
    /// within rounding; at every instruction-set level.
    func testRowChunksFollowTheL2WithTheSameValues() {
        defer { bnk_set_l2_bytes(0); Kernels.limitInstructionSet(2) }
        XCTAssertGreaterThanOrEqual(bnk_l2_bytes(), 64 << 10)
        bnk_set_l2_bytes(512 << 10)
        XCTAssertEqual(bnk_l2_bytes(), 512 << 10)
        for level in [2, 1, 0] {
            Kernels.limitInstructionSet(level)
            rowChunksFollowTheL2WithTheSameValues(Kernels.gemmImplementation)
        }
    }

    private func rowChunksFollowTheL2WithTheSameValues(_ isa: String) {
        let (m, n, k) = (600, 80, 520)
        let a = random.floats(m * k, in: -1...1), b = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
        let residual = random.floats(m * n, in: -1...1)
        var panels = [Float](repeating: .nan, count: bnk_panels_floats(Int32(k), Int32(n)))
        bnk_pack_panels(Int32(k), Int32(n), b, Int32(n), &panels)
        var byL2: [[Float]] = []
        for l2 in [1 << 20, 512 << 10, 256 << 10] {
            bnk_set_l2_bytes(l2)
            var c = [Float](repeating: .nan, count: m * n)
            bnk_gemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(k), panels, bias, residual, &c, Int32(n), Int32(BNK_ACT_RELU6))
            byL2.append(c)
        }
        XCTAssertEqual(byL2[1].map(\.bitPattern), byL2[0].map(\.bitPattern), "\(isa): 512 KiB of L2 (chunks) against 1 MiB (whole)")
        XCTAssertEqual(byL2[2].map(\.bitPattern), byL2[0].map(\.bitPattern), "\(isa): 256 KiB of L2 against 1 MiB")
        var reference = [Float](repeating: .nan, count: m * n)
        bnk_gemm_reference(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &reference, Int32(n), Int32(BNK_ACT_LINEAR))
        for i in 0..<(m * n) {
            let expected = min(max(reference[i] + residual[i], 0), 6)
            if abs(byL2[1][i] - expected) > 2e-5 * Float(k).squareRoot() * max(1, abs(expected)) {
                XCTFail("\(isa) [\(i)]: \(byL2[1][i]) against the reference's \(expected)")
                break
            }
        }
    }

    /// B prepacked into panels once (`bnk_pack_panels`, as a planned model's kernels are):
    /// the same values as the GEMM packing per call, bit for bit (and the reference's within
    /// rounding), whole or by column ranges
    /// starting at any panel, with column tails of every width and the sigmoid epilogue; and
    /// with an A of more than 2 MiB beside panels of more than 128 KiB (1100 × 520: done in
    /// chunks of rows, B's panels read again per chunk).
    func testPrepackedPanelsEqualTheGEMM() {
        // 24, 40, 56 and 64 + 24 columns over long and short sums: AVX-512's last 8 columns in a
        // 256-bit vector (tile512_wide24, tile512_x4's HALF).
        for (m, n, k) in [(50, 37, 5), (25, 70, 300), (13, 96, 64), (1, 1000, 40), (97, 16, 9), (36, 8, 130), (7, 33, 17), (12, 48, 2),
                          (1100, 80, 520), (30, 24, 72), (19, 40, 100), (13, 56, 70), (20, 40, 30), (23, 24, 40), (8, 88, 66)] {
            let a = random.floats(m * k, in: -1...1), b = random.floats(k * n, in: -1...1), bias = random.floats(n, in: -1...1)
            var panels = [Float](repeating: .nan, count: bnk_panels_floats(Int32(k), Int32(n)))
            XCTAssertEqual(panels.count, (n + 15) / 16 * 16 * k)
            bnk_pack_panels(Int32(k), Int32(n), b, Int32(n), &panels)
            let residual = random.floats(m * n, in: -1...1)
            var linear = [Float](repeating: .nan, count: m * n)
            bnk_gemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(k), panels, bias, nil, &linear, Int32(n), Int32(BNK_ACT_LINEAR))
            for act in [BNK_ACT_LINEAR, BNK_ACT_RELU, BNK_ACT_RELU6, BNK_ACT_SIGMOID] {
                var expected = [Float](repeating: .nan, count: m * n), whole = expected, blocks = expected
                bnk_gemm(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &expected, Int32(n), Int32(act))
                bnk_gemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(k), panels, bias, nil, &whole, Int32(n), Int32(act))
                // A residual added before the activation: the separate Add's sum, then the activation.
                var added = zip(linear, residual).map { $0 + $1 }
                switch act {
                case BNK_ACT_RELU: added = added.map { $0 > 0 ? $0 : 0 }
                case BNK_ACT_RELU6: added = added.map { $0 > 0 ? min($0, 6) : 0 }
                case BNK_ACT_SIGMOID: bnk_sigmoid(&added, added.count)
                default: break
                }
                var fused = [Float](repeating: .nan, count: m * n)
                bnk_gemm_panels(Int32(m), Int32(n), Int32(k), a, Int32(k), panels, bias, residual, &fused, Int32(n), Int32(act))
                XCTAssertEqual(fused.map(\.bitPattern), added.map(\.bitPattern), "\(m)×\(n)×\(k) act \(act): residual")
                panels.withUnsafeBufferPointer { p in
                    bias.withUnsafeBufferPointer { bias in
                        blocks.withUnsafeMutableBufferPointer { c in
                            var n0 = 0
                            for width in [16, 48, 32, 1000] where n0 < n {
                                let cols = min(width, n - n0)
                                bnk_gemm_panels(Int32(m), Int32(cols), Int32(k), a, Int32(k), p.baseAddress! + n0 * k,
                                                bias.baseAddress! + n0, nil, c.baseAddress! + n0, Int32(n), Int32(act))
                                n0 += cols
                            }
                        }
                    }
                }
                XCTAssertEqual(whole.map(\.bitPattern), expected.map(\.bitPattern), "\(m)×\(n)×\(k) act \(act): panels")
                var reference = [Float](repeating: .nan, count: m * n)
                bnk_gemm_reference(Int32(m), Int32(n), Int32(k), a, Int32(k), b, bias, &reference, Int32(n), Int32(act))
                for i in 0..<(m * n) where abs(whole[i] - reference[i]) > 2e-5 * Float(k).squareRoot() * max(1, abs(reference[i])) {
                    XCTFail("\(m)×\(n)×\(k) act \(act) [\(i)]: \(whole[i]) against the reference's \(reference[i])")
                    break
                }
                XCTAssertEqual(blocks.map(\.bitPattern), expected.map(\.bitPattern), "\(m)×\(n)×\(k) act \(act): panel column ranges")
            }
        }
    }

    /// A conv whose only reader is a residual Add (ResNet's last conv of a block, MobileNetV2's
    /// projection): the GEMM adds the shortcut as it stores, then the Add's activation. Equal bit for
    /// bit to the unfused steps (observing the conv keeps it unfused), with one and two threads
    /// (split by rows, and by output channels for few pixels), pointwise and strided 3×3 (indirect).
    func testResidualAddFusedIntoTheConvolution() throws {
        func conv(_ k: Int, _ cin: Int, _ cout: Int, stride: Int = 1, activation: Activation = .linear) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.3...0.3)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), strides: [stride, stride], padding: .same,
                               activation: activation))
        }
        // (input side, channels, stride of the block, the activation after the Add)
        for (side, c, stride, after) in [(48, 16, 1, Activation.relu), (16, 96, 2, .relu6), (9, 20, 1, .hardSwish), (11, 16, 2, .linear)] {
            let out = stride == 1 ? 2 * c : c
            var nodes = [Node(name: "in", operation: .input(shape: [side, side, c]), inputs: [])]
            func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
            add("shortcut", try conv(1, c, out, stride: stride), ["in"])
            add("a", try conv(3, c, c, activation: .relu), ["in"])
            add("b", try conv(stride == 1 ? 1 : 3, c, out, stride: stride), ["a"])        // pointwise, or a strided 3×3 (indirect)
            add("sum", .add, ["b", "shortcut"])
            var output = "sum"
            if after != .linear { add("act", .activation(after), ["sum"]); output = "act" }
            let graph = try Graph(name: "residual", nodes: nodes, outputs: [output])
            let fused = try Executor(graph: graph), unfused = try Executor(graph: graph, observing: ["b"])
            XCTAssertFalse(fused.stepProfile.contains { $0.operation == "add" }, "the Add is fused (\(side), \(c), \(stride))")
            XCTAssertTrue(unfused.stepProfile.contains { $0.operation == "add" })
            for batch in [1, 3] {
                let input = random.floats(batch * side * side * c, in: -1...1)
                let expected = try unfused.run(input, threads: 1)
                XCTAssertEqual(try fused.run(input, threads: 1).map(\.bitPattern), expected.map(\.bitPattern), "\(side) \(c) \(stride) batch \(batch)")
                XCTAssertEqual(try Executor(graph: graph).run(input, threads: 2).map(\.bitPattern), expected.map(\.bitPattern),
                               "\(side) \(c) \(stride) batch \(batch), 2 threads")
            }
        }
    }

    /// Whether one sample is split across threads: by its largest activation, or by its work
    /// (small maps with many multiply-adds, like MNIST's bigger CNN, are split; a small MLP is
    /// not); a split small-map network gives the one-thread values bit for bit.
    func testSmallMapsWithMuchWorkAreSplit() throws {
        func conv(_ cin: Int, _ cout: Int) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, cin, cout], values: random.floats(9 * cin * cout, in: -0.2...0.2)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), padding: .same, activation: .relu))
        }
        // 14×14×64 activations (12,544 floats, under smallestSplitSample), 7.3 M multiply-adds.
        let heavy = try Graph.sequential(name: "heavy", inputShape: [14, 14, 32], layers: [("c1", try conv(32, 64)), ("c2", try conv(64, 64))])
        let executor = try Executor(graph: heavy)
        XCTAssertTrue(executor.splitsSamples)
        let input = random.floats(14 * 14 * 32, in: -1...1)
        XCTAssertEqual(try Executor(graph: heavy).run(input, threads: 2), try executor.run(input, threads: 1))
        // The same maps with a fraction of the work (2 → 4 → 4 channels): one thread per sample.
        let light = try Graph.sequential(name: "light", inputShape: [14, 14, 2], layers: [("c1", try conv(2, 4)), ("c2", try conv(4, 4))])
        XCTAssertFalse(try Executor(graph: light).splitsSamples)
        let mlp = try Graph.sequential(name: "mlp", inputShape: [784], layers: [
            ("d1", .dense(try Dense(kernel: Tensor(shape: [784, 50], values: random.floats(784 * 50, in: -0.1...0.1)), bias: nil,
                                    activation: .sigmoid))),
        ])
        XCTAssertFalse(try Executor(graph: mlp).splitsSamples)
    }

    /// Samples per tile: 1 MiB of the largest activation (8 to 256 samples); with larger maps,
    /// √(weights / largest map), at least 4 MiB of the largest activation when one sample's is
    /// 128 KiB to 1 MiB, and at least enough samples for 32 GEMM rows in the steps doing 5% of
    /// the work or more (none in a deep chain of equal steps); at most 8. Tiles of any size give
    /// the same outputs.
    func testSamplesPerTileFollowTheActivationsAndTheRows() throws {
        func conv(_ cin: Int, _ cout: Int, stride: Int = 1) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [3, 3, cin, cout], values: random.floats(9 * cin * cout, in: -0.2...0.2)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), strides: [stride, stride], padding: .same, activation: .relu))
        }
        let mlp = try Graph.sequential(name: "mlp", inputShape: [784], layers: [
            ("d1", .dense(try Dense(kernel: Tensor(shape: [784, 50], values: random.floats(784 * 50, in: -0.1...0.1)), bias: nil,
                                    activation: .sigmoid))),
        ])
        XCTAssertEqual(try Executor(graph: mlp).samplesPerTile, 256)
        // 64×64×16 maps (65,536 floats): 4 per MiB, raised to 8.
        let small = try Graph.sequential(name: "small", inputShape: [64, 64, 3], layers: [("c1", try conv(3, 16))])
        XCTAssertEqual(try Executor(graph: small).samplesPerTile, 8)
        // 80×80×32 maps (204,800 floats, 0.8 MB) and light weights: 5 in 4 MiB; with a strided conv
        // of 4×4 = 16 rows doing a share of the work, still 5 (2 make 32 rows); of 2×2 = 4 rows, 8.
        let middle = try Graph.sequential(name: "middle", inputShape: [80, 80, 3], layers: [("c1", try conv(3, 32))])
        XCTAssertEqual(try Executor(graph: middle).samplesPerTile, 5)
        for (stride, expected) in [(20, 5), (40, 8)] {
            let few = try Graph.sequential(name: "few", inputShape: [80, 80, 3], layers: [("c1", try conv(3, 32)), ("c2", try conv(32, 512, stride: stride))])
            XCTAssertEqual(try Executor(graph: few).samplesPerTile, expected, "stride \(stride)")
        }
        // 160×160×16 maps (409,600 floats, over 1 MiB) and 6,400-row convs: one sample per tile.
        let large = try Graph.sequential(name: "large", inputShape: [160, 160, 3], layers: [("c1", try conv(3, 16)), ("c2", try conv(16, 16))])
        let executor = try Executor(graph: large)
        XCTAssertEqual(executor.samplesPerTile, 1)
        let input = random.floats(3 * 160 * 160 * 3, in: -1...1)
        let together = try executor.run(input, threads: 1)
        let sample = 160 * 160 * 3
        var alone: [Float] = []
        for i in 0..<3 { alone += try executor.run(Array(input[(i * sample)..<((i + 1) * sample)]), threads: 1) }
        XCTAssertEqual(together, alone)
        XCTAssertEqual(try executor.run(input, threads: 2), together)
        // A deep chain: 24 equal 3×3 convs over 160×160×16, none 5% of the work: no floor of rows,
        // and light weights against the maps: one sample.
        let deep = try Graph.sequential(name: "deep", inputShape: [160, 160, 3],
                                        layers: try [("c0", conv(3, 16))] + (1...24).map { ("c\($0)", try conv(16, 16)) })
        XCTAssertEqual(try Executor(graph: deep).samplesPerTile, 1)
        // Large maps, all the work in one strided conv: 8×8 = 64 output rows at stride 20 (one
        // sample is enough), 4×4 = 16 at stride 40 (two samples make 32 rows).
        for (stride, expected) in [(20, 1), (40, 2)] {
            let strided = try Graph.sequential(name: "strided", inputShape: [160, 160, 16], layers: [("c1", try conv(16, 512, stride: stride))])
            XCTAssertEqual(try Executor(graph: strided).samplesPerTile, expected, "stride \(stride)")
        }
        // Maps over the budget (100 × 2,700 floats) with heavy weights (2,700 × 2,700, 100 rows):
        // √(7.29 M / 0.27 M) = 5.2 → tiles of 5, the weights read once per 5 samples.
        let heavy = try Graph.sequential(name: "heavy", inputShape: [100, 2700], layers: [
            ("d", .dense(try Dense(kernel: Tensor(shape: [2700, 2700], values: [Float](repeating: 0.001, count: 2700 * 2700)), bias: nil,
                                   activation: .linear))),
        ])
        XCTAssertEqual(try Executor(graph: heavy).samplesPerTile, 5)
        // Maps within the 4 MiB band (40 × 3,300 = 132,000 floats: 7 in 4 MiB) with heavier weights
        // (3,300 × 3,300): √(10.9 M / 0.132 M) = 9.1 → the most, 8.
        let heavier = try Graph.sequential(name: "heavier", inputShape: [40, 3300], layers: [
            ("d", .dense(try Dense(kernel: Tensor(shape: [3300, 3300], values: [Float](repeating: 0.001, count: 3300 * 3300)), bias: nil,
                                   activation: .linear))),
        ])
        XCTAssertEqual(try Executor(graph: heavier).samplesPerTile, 8)
    }

    /// A Winograd conv with its 2×2 max pooling fused, one image on two and three threads: each
    /// thread's conv rows in pairs (whole pooling windows; an odd last conv row dropped by the
    /// pooling), the same values as one thread bit for bit, and the reference's; and so for seven
    /// images, in tiles the workers claim.
    func testPooledWinogradSplitAcrossThreads() throws {
        let (h, w, c, out) = (61, 59, 16, 24)
        let kernel = random.floats(9 * c * out, in: -0.3...0.3), bias = random.floats(out, in: -0.1...0.1)
        let conv = try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel), bias: Tensor(bias), padding: .same, activation: .relu)
        let graph = try Graph.sequential(name: "wp", inputShape: [h, w, c],
                                         layers: [("conv", .conv2d(conv)),
                                                  ("pool", .pool2d(try Pool2D(kind: .max, size: [2, 2], strides: [2, 2], padding: .valid)))])
        let executor = try Executor(graph: graph)
        XCTAssertTrue(executor.splitsSamples)
        XCTAssertEqual(executor.stepProfile.map(\.operation), ["winograd"])
        // Batch 7: tiles claimed as the workers come free (`TileQueue`).
        for batch in [1, 2, 7] {
            let input = random.floats(batch * h * w * c, in: -1...1)
            let one = try executor.run(input, threads: 1)
            XCTAssertEqual(one.count, batch * 30 * 29 * out)
            XCTAssertEqual(try Executor(graph: graph).run(input, threads: 2), one, "batch \(batch), 2 threads")
            XCTAssertEqual(try Executor(graph: graph).run(input, threads: 3), one, "batch \(batch), 3 threads")
            for b in 0..<batch {
                let x = input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init)
                let (y, oh, ow) = ReferenceOps.conv2d(x, h: h, w: w, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias,
                                                      stride: [1, 1], dilation: [1, 1], same: true, groups: 1)
                let pooled = ReferenceOps.pool(y.map { max($0, 0) }, h: oh, w: ow, c: out, size: [2, 2], stride: [2, 2], same: false,
                                               isMax: true).values
                // Winograd's transforms round more than a direct sum: within 1e-5 of the reference
                // (a bound of about 4 eps times the 144 products' absolute sum, about 3e-6 here;
                // 1e-6 failed once at the portable level, by 1.04e-6 on 0.78).
                for (k, e) in pooled.enumerated() {
                    XCTAssertEqual(Double(one[b * pooled.count + k]), e, accuracy: 1e-5 * max(1, abs(e)), "b\(b) k\(k)")
                }
            }
        }
    }

    /// Winograd on a small map (6×6: three rows of 2×2 tiles) with fewer images than threads is
    /// split by output channels (7 panels of 16: 48 + 64 on two threads, 32 + 32 + 48 on three),
    /// every thread transforming the whole input: the same values as one thread bit for bit, with
    /// the activation fused (ReLU) and after the product (swish), and the reference's.
    func testSmallMapWinogradSplitByOutputChannels() throws {
        let (h, w, c, out) = (6, 6, 128, 112)
        for activation in [Activation.relu, .swish] {
            let kernel = random.floats(9 * c * out, in: -0.3...0.3), bias = random.floats(out, in: -0.1...0.1)
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel), bias: Tensor(bias), padding: .same,
                                  activation: activation)
            let graph = try Graph.sequential(name: "ws", inputShape: [h, w, c], layers: [("conv", .conv2d(conv))])
            let executor = try Executor(graph: graph)
            XCTAssertTrue(executor.splitsSamples)
            XCTAssertEqual(executor.stepProfile.map(\.operation), ["winograd"])
            for batch in [1, 2] {
                let input = random.floats(batch * h * w * c, in: -1...1)
                let one = try executor.run(input, threads: 1)
                XCTAssertEqual(try Executor(graph: graph).run(input, threads: 2), one, "\(activation) batch \(batch), 2 threads")
                XCTAssertEqual(try Executor(graph: graph).run(input, threads: 3), one, "\(activation) batch \(batch), 3 threads")
                for b in 0..<batch {
                    let x = input[(b * h * w * c)..<((b + 1) * h * w * c)].map(Double.init)
                    let (y, _, _) = ReferenceOps.conv2d(x, h: h, w: w, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias,
                                                        stride: [1, 1], dilation: [1, 1], same: true, groups: 1)
                    for (k, v) in y.enumerated() {
                        let e = activation == .relu ? max(v, 0) : v / (1 + Foundation.exp(-v))
                        // Winograd's rounding: a bound of about 4 eps times the 1152 products' absolute sum.
                        XCTAssertEqual(Double(one[b * y.count + k]), e, accuracy: 1e-4 * max(1, abs(e)), "\(activation) b\(b) k\(k)")
                    }
                }
            }
        }
    }

    /// Splits with one range a worker go by the workers' measured speeds: a small map's rows (a
    /// Winograd conv with the max pooling fused, 14×14: whole tile rows and pooling windows) and a
    /// Winograd conv's output channels on a 6×6 map. Under skewed shares on two and three threads,
    /// one thread's values bit for bit.
    func testSmallMapSplitsUnderSkewedSharesGiveOneThreadsValues() throws {
        let cases: [(h: Int, c: Int, out: Int, pool: Bool)] = [(14, 64, 192, true), (6, 128, 112, false)]
        for t in cases {
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, t.c, t.out], values: random.floats(9 * t.c * t.out, in: -0.3...0.3)),
                                  bias: Tensor(random.floats(t.out, in: -0.1...0.1)), padding: .same, activation: .relu)
            let layers: [(String, Op)] = [("conv", .conv2d(conv))]
                + (t.pool ? [("pool", .pool2d(try Pool2D(kind: .max, size: [2, 2], strides: [2, 2], padding: .valid)))] : [])
            let graph = try Graph.sequential(name: "skew", inputShape: [t.h, t.h, t.c], layers: layers)
            let executor = try Executor(graph: graph)
            XCTAssertTrue(executor.splitsSamples, "\(t)")
            XCTAssertEqual(executor.stepProfile.map(\.operation), ["winograd"], "\(t)")
            let input = random.floats(t.h * t.h * t.c, in: -1...1)
            let one = try executor.run(input, threads: 1)
            for shares in [[0.15, 0.85], [0.8, 0.2], [0.6, 0.1, 0.3], [0.2, 0.3, 0.5]] {
                let skewed = try Executor(graph: graph)
                skewed.setBalance(shares, threads: shares.count)
                XCTAssertEqual(try skewed.run(input, threads: shares.count), one, "\(t), shares \(shares)")
            }
        }
    }

    /// Which way a Winograd conv on a small map is split: by output channels when an image's rows of
    /// 2×2 tiles do not go evenly to the workers, a worker would get one, or more than one image
    /// runs; else by tile rows (12×12 at batch 1: six rows, 3 + 3 on two threads, 2 + 2 + 2 on
    /// three). Both ways, on two, three and four threads, the values are one thread's bit for bit.
    func testSmallMapWinogradSplitByTileRowsWhenTheyGoEvenly() throws {
        func columns(_ h: Int, batch: Int = 1, workers: Int) -> Bool {
            Executor.winogradSharesColumns(outHeight: h, outWidth: h, outChannels: 128, batch: batch, elementwise: true, workers: workers)
        }
        XCTAssertTrue(columns(6, workers: 2))            // three tile rows
        XCTAssertTrue(columns(6, workers: 3))            // one a worker: all the weights each
        XCTAssertFalse(columns(12, workers: 2))          // six
        XCTAssertFalse(columns(12, workers: 3))
        XCTAssertTrue(columns(12, workers: 4))
        XCTAssertFalse(columns(8, workers: 2))           // four
        XCTAssertTrue(columns(10, workers: 2))           // five
        XCTAssertTrue(columns(13, workers: 2))           // seven, the last one row
        XCTAssertTrue(columns(8, batch: 2, workers: 2))  // two images
        XCTAssertFalse(columns(12, batch: 2, workers: 3)) // 288 pixels: by rows, image by image
        XCTAssertFalse(Executor.winogradSharesColumns(outHeight: 6, outWidth: 6, outChannels: 128, batch: 1, elementwise: false, workers: 2))
        for (side, out) in [(12, 80), (8, 96)] {
            let c = 48
            let kernel = random.floats(9 * c * out, in: -0.3...0.3), bias = random.floats(out, in: -0.1...0.1)
            let conv = try Conv2D(kernel: Tensor(shape: [3, 3, c, out], values: kernel), bias: Tensor(bias), padding: .same,
                                  activation: .relu)
            let graph = try Graph.sequential(name: "wr", inputShape: [side, side, c], layers: [("conv", .conv2d(conv))])
            let executor = try Executor(graph: graph)
            XCTAssertEqual(executor.stepProfile.map(\.operation), ["winograd"])
            for batch in [1, 2] {
                let input = random.floats(batch * side * side * c, in: -1...1)
                let one = try executor.run(input, threads: 1)
                for threads in 2...4 {
                    XCTAssertEqual(try Executor(graph: graph).run(input, threads: threads), one, "\(side)×\(side) batch \(batch), \(threads) threads")
                }
                let x = input[0..<(side * side * c)].map(Double.init)
                let (y, _, _) = ReferenceOps.conv2d(x, h: side, w: side, c: c, kernel: kernel, kh: 3, kw: 3, out: out, bias: bias,
                                                    stride: [1, 1], dilation: [1, 1], same: true, groups: 1)
                for (k, v) in y.enumerated() {
                    XCTAssertEqual(Double(one[k]), max(v, 0), accuracy: 1e-4 * max(1, abs(v)), "\(side)×\(side) k\(k)")
                }
            }
        }
    }

    /// A pointwise conv whose map (over 256 KiB) only a depthwise conv reads runs with it in strips
    /// of rows, the map never written whole: one step, and the same values, bit for bit, as the
    /// two steps apart (planned apart when the map is observed) — on one, two and three threads,
    /// one and two images; strides 1 and 2, 3×3 and 5×5, a dilation, a depth multiplier, a zero
    /// padding folded into the depthwise conv (Keras's stride-2 blocks), activations stored by
    /// either conv or applied after (swish, hard swish); and the reference's values. On small
    /// maps one image's expansion is shared by the workers (`sharesExpansion`), the same values.
    func testPointwiseThenDepthwiseInStripsEqualsTheTwoSteps() throws {
        let cases: [(h: Int, w: Int, c: Int, middle: Int, k: Int, stride: Int, dilation: Int, multiplier: Int, pad: Bool,
                     expand: Activation, after: Activation)] = [
            (64, 64, 8, 64, 3, 1, 1, 1, false, .relu6, .relu6),       // strips of 14 rows, windows moved
            (63, 65, 6, 72, 3, 2, 1, 1, true, .swish, .swish),        // Keras's stride 2: ZeroPadding2D((0, 1), (0, 1)), valid
            (65, 61, 5, 80, 5, 2, 1, 1, false, .hardSwish, .relu),    // 5×5 stride 2, same
            (60, 60, 7, 80, 3, 1, 2, 1, false, .relu, .linear),       // dilation 2
            (64, 64, 4, 64, 3, 1, 1, 2, false, .linear, .sigmoid),    // depth multiplier 2
            // Small maps whose strips would compute many rows twice: the workers share one
            // expansion of the image (EfficientNet's 5×5 on 14×14; a stride 2 over a folded
            // padding; MobileNetV2 224's 3×3 on 14×14 with a depth multiplier).
            (14, 14, 112, 672, 5, 1, 1, 1, false, .swish, .swish),
            (15, 15, 64, 320, 5, 2, 1, 1, true, .relu6, .relu),
            (14, 14, 48, 384, 3, 1, 1, 2, false, .relu6, .linear),
        ]
        for t in cases {
            let pw = try Conv2D(kernel: Tensor(shape: [1, 1, t.c, t.middle], values: random.floats(t.c * t.middle, in: -0.5...0.5)),
                                bias: Tensor(random.floats(t.middle, in: -0.2...0.2)), padding: .valid)
            let dwKernel = random.floats(t.k * t.k * t.middle * t.multiplier, in: -0.5...0.5)
            let dwBias = random.floats(t.middle * t.multiplier, in: -0.2...0.2)
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.middle, t.multiplier], values: dwKernel), bias: Tensor(dwBias),
                                         strides: [t.stride, t.stride], dilation: [t.dilation, t.dilation], padding: t.pad ? .valid : .same)
            let layers: [(String, Op)] = [("expand", .conv2d(pw)), ("expand_act", .activation(t.expand))]
                + (t.pad ? [("pad", .zeroPadding2d([0, 1, 0, 1]))] : []) + [("dw", .depthwiseConv2d(dw)), ("dw_act", .activation(t.after))]
            let graph = try Graph.sequential(name: "pd", inputShape: [t.h, t.w, t.c], layers: layers)
            let name = "\(t)"
            let striped = try Executor(graph: graph)
            XCTAssertEqual(striped.stepProfile.map(\.operation), ["pointwiseDepthwise"], name)
            // Observing the expansion keeps it (and so the two steps apart).
            let apart = try Executor(graph: graph, observing: ["expand_act"])
            XCTAssertEqual(apart.stepProfile.map(\.operation), ["conv2d", "depthwise"], name)
            for batch in [1, 2] {
                let input = random.floats(batch * t.h * t.w * t.c, in: -1...1)
                let expected = try apart.run(input)
                // Two and three workers with equal shares of the rows and with the shares the
                // measured speeds of unequal cores give.
                try assertSharesGive(expected, graph, input, shares: [[1.0], [1, 1], [1, 1, 1], [0.15, 0.85], [0.8, 0.2], [0.6, 0.1, 0.3]],
                                     "\(name), batch \(batch)", unlike: "the two steps'")
                if batch == 2 { continue }
                // The reference: the expansion in Double, then the depthwise conv.
                let expand = Self.formulas.first { $0.0 == t.expand }?.1 ?? { $0 }
                let after = Self.formulas.first { $0.0 == t.after }?.1 ?? { $0 }
                let (middle, _, _) = ReferenceOps.conv2d(input.map(Double.init), h: t.h, w: t.w, c: t.c, kernel: pw.kernel.values, kh: 1, kw: 1,
                                                         out: t.middle, bias: pw.bias?.values, stride: [1, 1], dilation: [1, 1], same: false,
                                                         groups: 1)
                var x = middle.map(expand), h = t.h, w = t.w
                if t.pad {
                    var padded = [Double](repeating: 0, count: (h + 1) * (w + 1) * t.middle)
                    for i in 0..<h { for j in 0..<w { for k in 0..<t.middle { padded[(i * (w + 1) + j) * t.middle + k] = x[(i * w + j) * t.middle + k] } } }
                    (x, h, w) = (padded, h + 1, w + 1)
                }
                let reference = ReferenceOps.depthwise(x, h: h, w: w, c: t.middle, kernel: dwKernel, kh: t.k, kw: t.k, multiplier: t.multiplier,
                                                       bias: dwBias, stride: [t.stride, t.stride], dilation: [t.dilation, t.dilation],
                                                       same: !t.pad).values
                XCTAssertEqual(reference.count, expected.count, name)
                let worst = zip(expected, reference).map { abs(Double($0) - after($1)) / max(1, abs(after($1))) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-4, name)
            }
        }
    }

    /// A pointwise conv and the depthwise conv after it, in strips, whose depthwise output only a
    /// pointwise conv reads (the block's projection, maybe with the residual Add): each strip is
    /// projected as it is made, one step, the same values bit for bit as the projection apart
    /// (planned apart when the depthwise output is observed): on one to three threads with any
    /// shares, one and two images, strides 1 and 2, a folded padding, a depth multiplier, and on
    /// small maps whose expansion the workers share.
    func testPointwiseDepthwiseStripsProjectedEqualTheProjectionApart() throws {
        let cases: [(h: Int, w: Int, c: Int, middle: Int, k: Int, stride: Int, multiplier: Int, pad: Bool, units: Int, residual: Bool)] = [
            (64, 64, 8, 64, 3, 1, 1, false, 8, true),          // strips of 14 rows, the residual added
            (63, 65, 6, 72, 3, 2, 1, true, 20, false),         // Keras's stride 2 over a folded padding
            (14, 14, 112, 672, 5, 1, 1, false, 112, true),     // one expansion shared, the residual added
            (14, 14, 48, 384, 3, 1, 2, false, 40, false),      // shared, a depth multiplier
        ]
        for t in cases {
            func conv(_ cin: Int, _ cout: Int, _ activation: Activation) throws -> Op {
                .conv2d(try Conv2D(kernel: Tensor(shape: [1, 1, cin, cout], values: random.floats(cin * cout, in: -0.5...0.5)),
                                   bias: Tensor(random.floats(cout, in: -0.2...0.2)), padding: .valid, activation: activation))
            }
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.middle, t.multiplier],
                                                        values: random.floats(t.k * t.k * t.middle * t.multiplier, in: -0.5...0.5)),
                                         bias: Tensor(random.floats(t.middle * t.multiplier, in: -0.2...0.2)), strides: [t.stride, t.stride],
                                         padding: t.pad ? .valid : .same, activation: .relu6)
            var nodes = [Node(name: "in", operation: .input(shape: [t.h, t.w, t.c]), inputs: [])]
            func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
            add("expand", try conv(t.c, t.middle, .relu6), ["in"])
            if t.pad { add("pad", .zeroPadding2d([0, 1, 0, 1]), ["expand"]) }
            add("dw", .depthwiseConv2d(dw), [t.pad ? "pad" : "expand"])
            add("project", try conv(t.middle * t.multiplier, t.units, t.residual ? .linear : .relu), ["dw"])
            if t.residual { add("add", .add, ["project", "in"]) }
            let graph = try Graph(name: "pdp", nodes: nodes, outputs: [t.residual ? "add" : "project"])
            let name = "\(t)"
            XCTAssertEqual(try Executor(graph: graph).stepProfile.map(\.operation), ["pointwiseDepthwise"], name)
            let apart = try Executor(graph: graph, observing: ["dw"])
            XCTAssertEqual(apart.stepProfile.map(\.operation), ["pointwiseDepthwise", "conv2d"], name)
            for batch in [1, 2] {
                let input = random.floats(batch * t.h * t.w * t.c, in: -1...1)
                let expected = try apart.run(input)
                try assertSharesGive(expected, graph, input, shares: [[1.0], [1, 1], [1, 1, 1], [0.15, 0.85], [0.6, 0.1, 0.3]],
                                     "\(name), batch \(batch)", unlike: "the projection apart")
            }
        }
    }

    /// An inverted-residual block on a small map (expansion, depthwise conv, projection, maybe the
    /// residual Add) runs as one step in parts of the expansion's channels (two to four, shared by
    /// the threads): the same values, bit for bit, on one to four threads and whatever images go
    /// with an image; within float32 rounding of the three steps apart (planned apart when the
    /// depthwise output is observed) — with and without the residual (and an activation after the
    /// Add), a stride-2 block with Keras's folded zero padding, 5×5, odd maps, parts of unequal
    /// width (9 and 13 panels in four parts, 6 and 3 in two). Blocks of 4 M multiply-adds or more
    /// split one image across the threads: their parts' sums added in pairs, each pair's by the
    /// thread that ran both as it stores the second (one thread, two with their own pairs), else in
    /// the combine (three and four threads, and two when a part is stolen), each thread its share.
    func testSmallMapBottleneckInPartsMatchesTheStepsApart() throws {
        let cases: [(h: Int, w: Int, c: Int, middle: Int, out: Int, k: Int, stride: Int, pad: Bool, residual: Bool,
                     expand: Activation, dw: Activation, after: Activation, splits: Bool)] = [
            (6, 6, 24, 144, 24, 3, 1, false, true, .relu6, .relu6, .linear, false),       // MobileNetV2's late blocks
            (12, 12, 32, 192, 64, 3, 1, false, false, .relu6, .relu6, .linear, false),    // no residual, wider output
            (7, 7, 16, 96, 40, 3, 2, true, false, .swish, .hardSwish, .linear, false),    // stride 2 over a folded padding
            (3, 3, 40, 200, 40, 5, 1, false, true, .relu, .relu, .relu, false),           // 5×5, 112 + 88 channels, ReLU after the Add
            (5, 4, 8, 48, 8, 3, 1, false, true, .hardSwish, .relu6, .swish, false),       // odd map, 32 + 16 channels
            (6, 6, 96, 576, 96, 3, 1, false, true, .relu6, .relu6, .linear, true),        // MobileNetV2 96's: 3456 floats out
            (12, 12, 64, 384, 64, 3, 1, false, false, .relu6, .relu6, .relu, true),       // 9216 floats out
        ]
        for t in cases {
            let expandConv = try Conv2D(kernel: Tensor(shape: [1, 1, t.c, t.middle], values: random.floats(t.c * t.middle, in: -0.5...0.5)),
                                        bias: Tensor(random.floats(t.middle, in: -0.2...0.2)), padding: .valid)
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [t.k, t.k, t.middle, 1], values: random.floats(t.k * t.k * t.middle, in: -0.5...0.5)),
                                         bias: Tensor(random.floats(t.middle, in: -0.2...0.2)), strides: [t.stride, t.stride],
                                         padding: t.pad ? .valid : .same)
            let projection = try Conv2D(kernel: Tensor(shape: [1, 1, t.middle, t.out], values: random.floats(t.middle * t.out, in: -0.3...0.3)),
                                        bias: Tensor(random.floats(t.out, in: -0.2...0.2)), padding: .valid)
            var nodes = [Node(name: "in", operation: .input(shape: [t.h, t.w, t.c]), inputs: [])]
            func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
            add("expand", .conv2d(expandConv), ["in"])
            add("expand_act", .activation(t.expand), ["expand"])
            if t.pad { add("pad", .zeroPadding2d([0, 1, 0, 1]), ["expand_act"]) }
            add("dw", .depthwiseConv2d(dw), [t.pad ? "pad" : "expand_act"])
            add("dw_act", .activation(t.dw), ["dw"])
            add("project", .conv2d(projection), ["dw_act"])
            if t.residual { add("add", .add, ["project", "in"]) }
            add("out", .activation(t.after), [t.residual ? "add" : "project"])
            let graph = try Graph(name: "bottleneck", nodes: nodes, outputs: ["out"])
            let name = "\(t)"
            let together = try Executor(graph: graph)
            XCTAssertEqual(together.stepProfile.map(\.operation), ["invertedBottleneck"], name)
            XCTAssertEqual(together.splitsSamples, t.splits, name)
            let apart = try Executor(graph: graph, observing: ["dw_act"])
            XCTAssertEqual(apart.stepProfile.map(\.operation), ["conv2d", "depthwise", "conv2d"], name)
            let image = t.h * t.w * t.c
            let input = random.floats(2 * image, in: -1...1)
            let one = try together.run(input, threads: 1)
            let outImage = one.count / 2
            for threads in [1, 2, 3, 4] {
                for i in 0..<2 {
                    let alone = try Executor(graph: graph).run(Array(input[(i * image)..<((i + 1) * image)]), threads: threads)
                    XCTAssertTrue(alone.elementsEqual(one[(i * outImage)..<((i + 1) * outImage)]) { $0.bitPattern == $1.bitPattern },
                                  "\(name), image \(i) alone on \(threads) threads: values unlike in a batch of two")
                }
                let both = try Executor(graph: graph).run(input, threads: threads)
                XCTAssertTrue(both.elementsEqual(one) { $0.bitPattern == $1.bitPattern }, "\(name), two images on \(threads) threads")
            }
            // The projection's sums taken in parts added: float32 rounding of the same sums (of 576
            // and 384 products in the longest: more rounding between the two orders).
            let expected = try apart.run(input)
            XCTAssertEqual(one.count, expected.count, name)
            let worst = zip(one, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            XCTAssertLessThan(worst, t.middle > 256 ? 8e-6 : 2e-6, name)
        }
        // MobileNet's chain (1×1, depthwise, 1×1, depthwise, 1×1, each with its ReLU6): the first
        // three are a block; the last 1×1 (a block's projection is not the next block's expansion)
        // and the depthwise conv before it are not, and run as one separable step.
        var chain: [(String, Op)] = []
        var channels = 32
        for i in 0..<2 {
            let pw = try Conv2D(kernel: Tensor(shape: [1, 1, channels, 64], values: random.floats(channels * 64, in: -0.3...0.3)),
                                bias: Tensor(random.floats(64, in: -0.1...0.1)), padding: .valid, activation: .relu6)
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 64, 1], values: random.floats(9 * 64, in: -0.3...0.3)),
                                         bias: Tensor(random.floats(64, in: -0.1...0.1)), padding: .same, activation: .relu6)
            chain += [("pw\(i)", .conv2d(pw)), ("dw\(i)", .depthwiseConv2d(dw))]
            channels = 64
        }
        let last = try Conv2D(kernel: Tensor(shape: [1, 1, 64, 48], values: random.floats(64 * 48, in: -0.3...0.3)),
                              bias: Tensor(random.floats(48, in: -0.1...0.1)), padding: .valid, activation: .relu6)
        let graph = try Graph.sequential(name: "chain", inputShape: [7, 7, 32], layers: chain + [("last", .conv2d(last)),
                                                                                                  ("pool", .globalPool(kind: .average, keepDims: false))])
        let executor = try Executor(graph: graph)
        XCTAssertEqual(executor.stepProfile.map(\.operation), ["invertedBottleneck", "separable", "globalPool"])
        let input = random.floats(7 * 7 * 32, in: -1...1)
        let found = try executor.run(input, threads: 2)
        XCTAssertEqual(found, try Executor(graph: graph).run(input, threads: 1))
        let expected = try Executor(graph: graph, observing: ["dw0"]).run(input)
        XCTAssertLessThan(zip(found, expected).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 1, 2e-6)
    }

    /// Consecutive small-map bottleneck blocks (MobileNetV2 96's 6×6×96 → 576 → 96 with their
    /// residual Adds, then a stride-2 block without) split one image across the threads in one
    /// hand-over (`InvertedBottleneck.run(chain:)`): the same values bit for bit on one to four
    /// threads, at batch 1 and 3, with and without an observed block in the middle (which cuts the
    /// chain there: its values and the output as in that plan's one-thread run); and each
    /// block of a chain has its time in the step profile.
    func testBottleneckChainMatchesOneThread() throws {
        var nodes = [Node(name: "in", operation: .input(shape: [6, 6, 96]), inputs: [])]
        func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
        var last = "in", blocks: [String] = []
        for b in 0..<4 {
            let stride = b == 3 ? 2 : 1, out = b == 3 ? 160 : 96
            let expand = try Conv2D(kernel: Tensor(shape: [1, 1, 96, 576], values: random.floats(96 * 576, in: -0.2...0.2)),
                                    bias: Tensor(random.floats(576, in: -0.2...0.2)), padding: .valid, activation: .relu6)
            let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 576, 1], values: random.floats(9 * 576, in: -0.4...0.4)),
                                         bias: Tensor(random.floats(576, in: -0.2...0.2)), strides: [stride, stride], padding: .same,
                                         activation: .relu6)
            let project = try Conv2D(kernel: Tensor(shape: [1, 1, 576, out], values: random.floats(576 * out, in: -0.1...0.1)),
                                     bias: Tensor(random.floats(out, in: -0.2...0.2)), padding: .valid)
            add("b\(b)_expand", .conv2d(expand), [last])
            add("b\(b)_dw", .depthwiseConv2d(dw), ["b\(b)_expand"])
            add("b\(b)_project", .conv2d(project), ["b\(b)_dw"])
            if stride == 1 {
                add("b\(b)_add", .add, ["b\(b)_project", last])
                last = "b\(b)_add"
            } else {
                last = "b\(b)_project"
            }
            blocks.append(last)
        }
        add("pool", .globalPool(kind: .average, keepDims: false), [last])
        let graph = try Graph(name: "chain", nodes: nodes, outputs: ["pool"])
        let one = try Executor(graph: graph)
        XCTAssertEqual(one.stepProfile.map(\.operation), Array(repeating: "invertedBottleneck", count: 4) + ["globalPool"])
        XCTAssertTrue(one.splitsSamples)
        let image = 6 * 6 * 96
        let input = random.floats(3 * image, in: -1...1)
        let expected = try one.run(input, threads: 1)
        let first = Array(input[0..<image]), expectedFirst = Array(expected[0..<(expected.count / 3)])
        let observedExpected = try Executor(graph: graph, observing: [blocks[1]])
        let seenAlone = Mutex<[Float]>([])
        // (Observed, the block's Add is a step of its own: its values and those after differ in
        // the last bits from the fused block's.)
        let observedFirst = try observedExpected.run(first, threads: 1) { _, values, _ in seenAlone.withLock { $0 = Array(values) } }
        let middle = seenAlone.withLock { $0 }
        XCTAssertEqual(middle.count, 6 * 6 * 96)
        for threads in 1...4 {
            XCTAssertTrue(try Executor(graph: graph).run(first, threads: threads).elementsEqual(expectedFirst) { $0.bitPattern == $1.bitPattern },
                          "one image on \(threads) threads")
            XCTAssertTrue(try Executor(graph: graph).run(input, threads: threads).elementsEqual(expected) { $0.bitPattern == $1.bitPattern },
                          "three images on \(threads) threads")
            let observing = try Executor(graph: graph, observing: [blocks[1]])
            let seen = Mutex<[Float]>([])
            let found = try observing.run(first, threads: threads) { _, values, _ in seen.withLock { $0 = Array(values) } }
            XCTAssertTrue(found.elementsEqual(observedFirst) { $0.bitPattern == $1.bitPattern }, "observed, on \(threads) threads")
            XCTAssertTrue(seen.withLock { $0 }.elementsEqual(middle) { $0.bitPattern == $1.bitPattern }, "the observed block on \(threads) threads")
        }
        let profiled = try Executor(graph: graph)
        profiled.profiling = true
        _ = try profiled.run(first, threads: 2)
        XCTAssertTrue(profiled.stepProfile.prefix(4).allSatisfy { $0.seconds > 0 }, "\(profiled.stepProfile)")
    }

    /// A block whose expansion's two maps are no wider than the partial sums its parts would add
    /// (MobileNet's 512 → 512 → 512 and 512 → 1024 → 1024) runs as its expansion and a separable
    /// step (the depthwise conv and the projection); wider expansions (MobileNetV2's 6×) run as
    /// one. The bound is strict.
    func testBlockWithoutAWideExpansionStaysApart() throws {
        func chain(_ widths: [Int]) throws -> Executor {
            var layers: [(String, Op)] = []
            for (i, (from, to)) in zip(widths, widths.dropFirst()).enumerated() {
                let pw = try Conv2D(kernel: Tensor(shape: [1, 1, from, to], values: random.floats(from * to, in: -0.3...0.3)),
                                    bias: Tensor(random.floats(to, in: -0.1...0.1)), padding: .valid, activation: .relu6)
                layers.append(("pw\(i)", .conv2d(pw)))
                if i + 2 < widths.count {
                    let dw = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, to, 1], values: random.floats(9 * to, in: -0.3...0.3)),
                                                 bias: Tensor(random.floats(to, in: -0.1...0.1)), padding: .same, activation: .relu6)
                    layers.append(("dw\(i)", .depthwiseConv2d(dw)))
                }
            }
            return try Executor(graph: Graph.sequential(name: "chain", inputShape: [5, 5, widths[0]],
                                                        layers: layers + [("pool", .globalPool(kind: .average, keepDims: false))]))
        }
        let apart = ["conv2d", "separable", "globalPool"], together = ["invertedBottleneck", "globalPool"]
        XCTAssertEqual(try chain([128, 128, 128]).stepProfile.map(\.operation), apart)      // four parts: 256 against 384
        XCTAssertEqual(try chain([16, 144, 96]).stepProfile.map(\.operation), apart)        // four parts (9 panels): 288 against 288
        XCTAssertEqual(try chain([16, 144, 95]).stepProfile.map(\.operation), together)     // 288 against 285
        XCTAssertEqual(try chain([32, 128, 32]).stepProfile.map(\.operation), together)
        XCTAssertEqual(try chain([16, 64, 64]).stepProfile.map(\.operation), together)      // two parts: 128 against 64
    }

    /// `graph`'s plan on as many threads as each of `shares` has, the rows of split steps shared in
    /// those proportions (the measured speeds of unequal cores), gives `expected` bit for bit.
    private func assertSharesGive(_ expected: [Float], _ graph: Graph, _ input: [Float], shares: [[Double]], _ name: String,
                                  unlike: String, line: UInt = #line) throws {
        for share in shares {
            let executor = try Executor(graph: graph)
            executor.setBalance(share, threads: share.count)
            let found = try executor.run(input, threads: share.count)
            XCTAssertEqual(found.count, expected.count, name, line: line)
            let differing = zip(found, expected).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(name), shares \(share): values unlike \(unlike)", line: line)
        }
    }

    /// `graph`'s plan on 1, 2 and 3 threads, at batch 1 and 3, gives the values of `apart` (the
    /// same graph planned with the fused steps kept apart) on one thread, bit for bit.
    private func assertFusedEqualsApart(_ graph: Graph, apart: Executor, sampleFloats: Int, line: UInt = #line) throws {
        for batch in [1, 3] {
            let input = random.floats(batch * sampleFloats, in: -1...1)
            let expected = try apart.run(input, threads: 1)
            for threads in [1, 2, 3] {
                XCTAssertEqual(try Executor(graph: graph).run(input, threads: threads), expected, "batch \(batch), \(threads) threads",
                               line: line)
            }
        }
    }

    /// Squeeze-and-excitation's product is not a step of its own: the pointwise conv reading it
    /// scales its rows chunk by chunk (`ScaledPointwise`), and a Dropout between the conv and its
    /// residual Add is left out, so the Add is fused into the conv. On a map of several chunks a
    /// sample (by rows across threads, chunks cut at the samples' ends) and on a small map (by
    /// output columns across threads), with a residual and without, the outputs are the separate
    /// steps' (the product and the Dropout observed, which keeps them) bit for bit, on 1, 2 and 3
    /// threads, at batch 1 and 3.
    func testSqueezeExcitationProductFusedIntoTheProjectionEqualsSeparateSteps() throws {
        func conv(_ k: Int, _ cin: Int, _ cout: Int, stride: Int = 1, activation: Activation = .linear) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.3...0.3)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), strides: [stride, stride], padding: .same,
                               activation: activation))
        }
        var nodes = [Node(name: "in", operation: .input(shape: [40, 37, 16]), inputs: [])]
        func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
        func squeezeExcite(_ prefix: String, _ map: String, channels: Int) throws {
            add("\(prefix)_squeeze", .globalPool(kind: .average, keepDims: true), [map])
            add("\(prefix)_reduce", try conv(1, channels, 8, activation: .swish), ["\(prefix)_squeeze"])
            add("\(prefix)_expand", try conv(1, 8, channels, activation: .sigmoid), ["\(prefix)_reduce"])
            add("\(prefix)_excite", .multiply, [map, "\(prefix)_expand"])
        }
        // 1480 pixels of 48 channels: chunks of 682 rows (three a sample).
        add("features", try conv(3, 16, 48, activation: .swish), ["in"])
        try squeezeExcite("a", "features", channels: 48)
        add("a_project", try conv(1, 48, 16), ["a_excite"])
        add("a_drop", .identity, ["a_project"])
        add("a_add", .add, ["a_drop", "in"])                                            // residual, through the Dropout
        // 5 × 5 pixels (fewer than three rows a thread): the output columns shared.
        add("small", try conv(3, 16, 48, stride: 8, activation: .relu), ["a_add"])
        try squeezeExcite("b", "small", channels: 48)
        add("b_project", try conv(1, 48, 256, activation: .relu6), ["b_excite"])        // no residual
        let graph = try Graph(name: "se", nodes: nodes, outputs: ["b_project"])
        let fused = try Executor(graph: graph), separate = try Executor(graph: graph, observing: ["a_excite", "a_drop", "b_excite"])
        let operations = fused.stepProfile.map(\.operation)
        XCTAssertEqual(operations.filter { $0 == "scaledPointwise" }.count, 2, "\(operations)")
        XCTAssertFalse(operations.contains("scaleChannels") || operations.contains("copy") || operations.contains("add"), "\(operations)")
        XCTAssertEqual(fused.stepProfile.first { $0.operation == "scaledPointwise" }?.layer, "a_add")
        XCTAssertEqual(separate.stepProfile.map(\.operation).filter { ["scaleChannels", "copy", "add"].contains($0) },
                       ["scaleChannels", "copy", "add", "scaleChannels"])
        try assertFusedEqualsApart(graph, apart: separate, sampleFloats: 40 * 37 * 16)
    }

    /// A DepthwiseConv2D (its bias and activation, a ReLU before it read through, a depth
    /// multiplier) whose only reader is a pointwise conv runs with it as one `separable` step: on a
    /// map whose depthwise output is written a few rows at a time, split by rows across threads,
    /// and on a small map whose product's columns are shared, the outputs equal the two steps'
    /// (the depthwise output observed, which keeps them apart) bit for bit, on 1, 2 and 3 threads,
    /// at batch 1 and 3.
    func testDepthwiseThenPointwiseRunAsOneStepEqualsTwoSteps() throws {
        func depthwise(_ channels: Int, multiplier: Int = 1, stride: Int = 1, activation: Activation) throws -> Op {
            .depthwiseConv2d(try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, channels, multiplier],
                                                                 values: random.floats(9 * channels * multiplier, in: -0.4...0.4)),
                                                 bias: Tensor(random.floats(channels * multiplier, in: -0.2...0.2)), strides: [stride, stride],
                                                 padding: .same, activation: activation))
        }
        func pointwise(_ cin: Int, _ cout: Int, activation: Activation = .linear) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [1, 1, cin, cout], values: random.floats(cin * cout, in: -0.3...0.3)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), strides: [1, 1], padding: .valid, activation: activation))
        }
        var nodes = [Node(name: "in", operation: .input(shape: [60, 61, 40]), inputs: [])]
        func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
        // 60 × 61 × 40 (143 K floats): the depthwise output in chunks of rows.
        add("relu", .activation(.relu), ["in"])
        add("dw", try depthwise(40, activation: .linear), ["relu"])
        add("dw_act", .activation(.relu6), ["dw"])
        add("pw", try pointwise(40, 24), ["dw_act"])
        // 8 × 8 after a stride of 8, a depth multiplier of 2: by rows on two threads (four rows
        // each), the product's columns shared on three (`separableSharesColumns`).
        add("down", .pool2d(try Pool2D(kind: .max, size: [8, 8], strides: [8, 8], padding: .same)), ["pw"])
        add("dw2", try depthwise(24, multiplier: 2, activation: .swish), ["down"])
        add("pw2", try pointwise(48, 112, activation: .relu), ["dw2"])
        let graph = try Graph(name: "dwpw", nodes: nodes, outputs: ["pw2"])
        let fused = try Executor(graph: graph), separate = try Executor(graph: graph, observing: ["dw_act", "dw2"])
        XCTAssertEqual(fused.stepProfile.map(\.operation), ["separable", "pool", "separable"])
        XCTAssertEqual(fused.stepProfile.map(\.layer), ["pw", "down", "pw2"])
        XCTAssertEqual(separate.stepProfile.map(\.operation), ["depthwise", "conv2d", "pool", "depthwise", "conv2d"])
        try assertFusedEqualsApart(graph, apart: separate, sampleFloats: 60 * 61 * 40)

        // 24 × 24 × 96 (55 K floats an image): whole images a pass, two at most (512 KiB), so a
        // batch of 3 goes in passes of 2 and 1.
        let small = try Graph(name: "dwpw2", nodes: [
            Node(name: "in", operation: .input(shape: [24, 24, 96]), inputs: []),
            Node(name: "dw", operation: try depthwise(96, activation: .relu6), inputs: ["in"]),
            Node(name: "pw", operation: try pointwise(96, 40), inputs: ["dw"]),
        ], outputs: ["pw"])
        XCTAssertEqual(try Executor(graph: small).stepProfile.map(\.operation), ["separable"])
        try assertFusedEqualsApart(small, apart: try Executor(graph: small, observing: ["dw"]), sampleFloats: 24 * 24 * 96)
    }

    /// Which way a depthwise → 1×1 step on a small map (at most 256 pixels a call) is split: by
    /// the 1×1's output columns only when the workers would get fewer than three rows each, else
    /// by rows. On 5×5 (columns on two threads) and 6×6 (rows on two, columns on three) maps the
    /// values are the two steps' apart bit for bit, on 1, 2 and 3 threads, at batch 1 and 3.
    func testSmallMapSeparableSplitByRowsWhenEveryWorkerGetsThree() throws {
        func columns(_ h: Int, batch: Int = 1, units: Int = 256, elementwise: Bool = true, workers: Int) -> Bool {
            Executor.separableSharesColumns(outHeight: h, outWidth: h, batch: batch, units: units, elementwise: elementwise, workers: workers)
        }
        XCTAssertTrue(columns(4, workers: 2))
        XCTAssertTrue(columns(5, workers: 2))             // 3 + 2 rows
        XCTAssertFalse(columns(6, workers: 2))            // 3 + 3
        XCTAssertTrue(columns(6, workers: 3))             // 2 + 2 + 2
        XCTAssertFalse(columns(7, workers: 2))
        XCTAssertFalse(columns(10, workers: 2))           // Xception 160's middle flow
        XCTAssertFalse(columns(10, workers: 3))
        XCTAssertTrue(columns(10, workers: 4))
        XCTAssertTrue(columns(5, batch: 3, workers: 2))   // 75 pixels
        XCTAssertFalse(columns(10, batch: 3, workers: 4)) // 300 pixels: by rows, image by image
        XCTAssertFalse(columns(5, units: 48, workers: 2)) // too few columns to share
        XCTAssertFalse(columns(5, elementwise: false, workers: 2))
        for side in [5, 6] {
            let c = 48, units = 112
            let graph = try Graph(name: "dwpw\(side)", nodes: [
                Node(name: "in", operation: .input(shape: [side, side, c]), inputs: []),
                Node(name: "dw", operation: .depthwiseConv2d(try DepthwiseConv2D(
                    kernel: Tensor(shape: [3, 3, c, 1], values: random.floats(9 * c, in: -0.4...0.4)),
                    bias: Tensor(random.floats(c, in: -0.2...0.2)), padding: .same, activation: .relu6)), inputs: ["in"]),
                Node(name: "pw", operation: .conv2d(try Conv2D(kernel: Tensor(shape: [1, 1, c, units], values: random.floats(c * units, in: -0.3...0.3)),
                                                               bias: Tensor(random.floats(units, in: -0.1...0.1)), padding: .valid,
                                                               activation: .relu)), inputs: ["dw"]),
            ], outputs: ["pw"])
            XCTAssertEqual(try Executor(graph: graph).stepProfile.map(\.operation), ["separable"])
            try assertFusedEqualsApart(graph, apart: try Executor(graph: graph, observing: ["dw"]), sampleFloats: side * side * c)
        }
    }

    /// A Dense over a small map whose weights are over 1 MiB (ConvNeXt's later stages at batch 1)
    /// is split by output columns, its GELU with it, rather than by rows (every worker streaming
    /// all of the weights); the values are one thread's, bit for bit, at any shares.
    func testDenseOverASmallMapWithLargeWeightsSharesColumns() throws {
        XCTAssertTrue(Executor.sharesColumns(rows: 100, units: 1536, weightFloats: 384 * 1536, workers: 2))   // ConvNeXt-T 160, 10×10
        XCTAssertTrue(Executor.sharesColumns(rows: 49, units: 768, weightFloats: 3072 * 768, workers: 2))     // 224, 7×7
        XCTAssertFalse(Executor.sharesColumns(rows: 144, units: 768, weightFloats: 192 * 768, workers: 2))    // 96, 12×12: 0.6 MB
        XCTAssertFalse(Executor.sharesColumns(rows: 400, units: 1536, weightFloats: 384 * 1536, workers: 2))  // 160, 20×20
        XCTAssertTrue(Executor.sharesColumns(rows: 1, units: 1000, weightFloats: 1280 * 1000, workers: 2))    // a classifier head
        let (h, w, inputs, units) = (9, 11, 160, 1700)  // 99 rows, 1.09 MB of weights
        let dense = try Dense(kernel: Tensor(shape: [inputs, units], values: random.floats(inputs * units, in: -0.2...0.2)),
                              bias: Tensor(random.floats(units, in: -1...1)), activation: .gelu(approximate: false))
        let graph = try Graph(name: "map", nodes: [
            Node(name: "x", operation: .input(shape: [h, w, inputs]), inputs: []),
            Node(name: "d", operation: .dense(dense), inputs: ["x"]),
        ], outputs: ["d"])
        let input = random.floats(h * w * inputs, in: -1...1)
        let one = try Executor(graph: graph).run(input, threads: 1)
        for threads in [2, 3] {
            // Fresh executors: buffers that still held the one-thread run's values would hide a value left unwritten.
            XCTAssertTrue(try Executor(graph: graph).run(input, threads: threads).map(\.bitPattern) == one.map(\.bitPattern), "\(threads) threads")
        }
        for shares in [[0.15, 0.85], [0.8, 0.2]] {
            let skewed = try Executor(graph: graph)
            skewed.setBalance(shares, threads: shares.count)
            XCTAssertTrue(try skewed.run(input, threads: shares.count).map(\.bitPattern) == one.map(\.bitPattern), "shares \(shares)")
        }
        // And the values are the formula's within float32 sums of 160 products (one output pixel,
        // every unit).
        let gelu = Self.formulas.first { $0.0 == .gelu(approximate: false) }!.1
        let pixel = 57
        for unit in 0..<units {
            var z = Double(dense.bias!.values[unit])
            for k in 0..<inputs { z += Double(input[pixel * inputs + k]) * Double(dense.kernel.values[k * units + unit]) }
            XCTAssertEqual(Double(one[pixel * units + unit]), gelu(z), accuracy: 1e-5 * max(1, abs(gelu(z))), "unit \(unit)")
        }
    }

    /// A channel concatenation (DenseNet's after each conv, Inception's of its branches) is split
    /// across the threads by pixels, with or without the activation its readers share: the
    /// outputs equal one thread's bit for bit, on 2 and 3 threads with any shares.
    func testConcatenationSplitAcrossThreadsEqualsOneThread() throws {
        func conv(_ k: Int, _ cin: Int, _ cout: Int) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.3...0.3)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), padding: .same))
        }
        for activated in [false, true] {
            var nodes = [Node(name: "in", operation: .input(shape: [30, 31, 8]), inputs: [])]
            func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
            add("a", try conv(1, 8, 16), ["in"])
            add("b", try conv(3, 8, 24), ["in"])
            add("cat", .concatenate(axis: 2), ["a", "b", "in"])
            if activated { add("cat_relu", .activation(.relu), ["cat"]) }
            add("out", try conv(1, 48, 20), [activated ? "cat_relu" : "cat"])
            let graph = try Graph(name: "cat", nodes: nodes, outputs: ["out"])
            XCTAssertTrue(try Executor(graph: graph).stepProfile.contains { $0.operation == "concatenate" })
            for batch in [1, 2] {
                let input = random.floats(batch * 30 * 31 * 8, in: -1...1)
                let one = try Executor(graph: graph).run(input, threads: 1)
                for shares in [[1.0, 1], [1, 1, 1], [0.2, 0.8], [0.5, 0.1, 0.4]] {
                    let executor = try Executor(graph: graph)
                    executor.setBalance(shares, threads: shares.count)
                    XCTAssertEqual(try executor.run(input, threads: shares.count), one, "activated \(activated), batch \(batch), shares \(shares)")
                }
            }
        }
    }

    /// One image (or fewer images than threads) runs each step split across the threads, by
    /// output rows, output channels or elements: the outputs equal one thread's bit for bit,
    /// for every kind of step that is split (odd sizes, strides, paddings, both Winograd and
    /// direct 3×3, a folded padding, a pooling, a residual add, squeeze-and-excitation).
    func testOneImageSplitAcrossThreadsEqualsOneThread() throws {
        func conv(_ k: Int, _ cin: Int, _ cout: Int, stride: Int = 1, padding: Padding = .same, activation: Activation = .linear) throws -> Op {
            .conv2d(try Conv2D(kernel: Tensor(shape: [k, k, cin, cout], values: random.floats(k * k * cin * cout, in: -0.3...0.3)),
                               bias: Tensor(random.floats(cout, in: -0.1...0.1)), strides: [stride, stride], padding: padding,
                               activation: activation))
        }
        let separable = try SeparableConv2D(depthwiseKernel: Tensor(shape: [3, 3, 40, 1], values: random.floats(360, in: -0.3...0.3)),
                                            pointwiseKernel: Tensor(shape: [1, 1, 40, 40], values: random.floats(1600, in: -0.3...0.3)),
                                            bias: Tensor(random.floats(40, in: -0.1...0.1)), padding: .same, activation: .relu)
        let depthwise = try DepthwiseConv2D(kernel: Tensor(shape: [3, 3, 40, 1], values: random.floats(360, in: -0.3...0.3)),
                                            bias: Tensor(random.floats(40, in: -0.1...0.1)), strides: [2, 2], padding: .same)
        let head = try Dense(kernel: Tensor(shape: [96, 70], values: random.floats(96 * 70, in: -0.3...0.3)), bias: nil, activation: .linear)
        // Large enough to be split (the largest activation, 31×30×40, over Executor.smallestSplitSample).
        var nodes = [Node(name: "in", operation: .input(shape: [61, 59, 3]), inputs: [])]
        func add(_ name: String, _ op: Op, _ inputs: [String]) { nodes.append(Node(name: name, operation: op, inputs: inputs)) }
        add("pad", .zeroPadding2d([1, 2, 2, 1]), ["in"])
        add("stem", try conv(3, 3, 16, stride: 2, padding: .valid), ["pad"])                 // folded padding, indirect conv, rows
        add("stem_act", .activation(.swish), ["stem"])
        add("wino", try conv(3, 16, 16), ["stem_act"])                                       // Winograd (31×30 map), rows in pairs
        add("wino_act", .activation(.hardSwish), ["wino"])
        add("res", .add, ["wino_act", "stem_act"])                                            // residual add, elements
        add("relu", .activation(.relu), ["res"])
        add("expand", try conv(1, 16, 40), ["relu"])                                          // pointwise, rows
        add("affine", .affine(try Affine(scale: Tensor(random.floats(40, in: 0.5...1.5)), shift: Tensor(random.floats(40, in: -1...1)))),
            ["expand"])                                                                       // per-channel affine, rows of channels
        add("product", .multiply, ["expand", "affine"])                                       // two-input product, elements
        add("sep", .separableConv2d(separable), ["product"])                                  // depthwise then pointwise, rows
        add("dw", .depthwiseConv2d(depthwise), ["sep"])                                       // strided depthwise, rows
        add("dw_act", .activation(.relu6), ["dw"])
        add("pool", .pool2d(try Pool2D(kind: .max, size: [3, 3], strides: [2, 2], padding: .same)), ["dw_act"])
        add("squeeze", .globalPool(kind: .average, keepDims: true), ["pool"])
        add("gate", .activation(.sigmoid), ["squeeze"])
        add("excite", .multiply, ["pool", "gate"])                                            // channel scale
        add("odd", try conv(1, 40, 112, activation: .relu), ["excite"])                       // few pixels, 7 panels: rows on 2, columns on 3
        add("small", try conv(3, 112, 96, stride: 2, activation: .swish), ["odd"])            // few pixels, 3×3/2: indirect by columns
        add("wide", try conv(1, 96, 96, activation: .relu), ["small"])                        // few pixels, 1×1: GEMM by columns
        add("gap", .globalPool(kind: .average, keepDims: false), ["wide"])
        add("head", .dense(head), ["gap"])                                                    // one row: columns
        let graph = try Graph(name: "split", nodes: nodes, outputs: ["head"])
        let executor = try Executor(graph: graph)
        XCTAssertTrue(executor.stepProfile.contains { $0.operation == "winograd" })
        for batch in [1, 2] {
            let input = random.floats(batch * 61 * 59 * 3, in: -1...1)
            let one = try executor.run(input, threads: 1)
            // Fresh executors: buffers that still held the one-thread run's values would hide a value left unwritten.
            XCTAssertEqual(try Executor(graph: graph).run(input, threads: 2), one, "batch \(batch), 2 threads")
            XCTAssertEqual(try Executor(graph: graph).run(input, threads: 3), one, "batch \(batch), 3 threads")
            // Work split in fixed ranges goes by the workers' measured speeds: any shares, the same values.
            for shares in [[0.15, 0.85], [0.8, 0.2], [0.6, 0.1, 0.3]] {
                let skewed = try Executor(graph: graph)
                skewed.setBalance(shares, threads: shares.count)
                XCTAssertEqual(try skewed.run(input, threads: shares.count), one, "batch \(batch), shares \(shares)")
            }
        }
        // And the values are the reference's: a plain evaluation of the first steps (the folded padding, the swish).
        let stemOnly = try Graph(name: "stem", nodes: Array(nodes.prefix(4)), outputs: ["stem_act"])
        let stem = try Executor(graph: stemOnly)
        let input = random.floats(61 * 59 * 3, in: -1...1)
        let split = try stem.run(input, threads: 2)
        guard case .conv2d(let stemConv) = nodes[2].operation else { return XCTFail("stem is a conv") }
        var padded = [Double](repeating: 0, count: 64 * 62 * 3)
        for i in 0..<61 { for j in 0..<59 { for k in 0..<3 { padded[((i + 1) * 62 + j + 2) * 3 + k] = Double(input[(i * 59 + j) * 3 + k]) } } }
        let (reference, _, _) = ReferenceOps.conv2d(padded, h: 64, w: 62, c: 3, kernel: stemConv.kernel.values, kh: 3, kw: 3, out: 16,
                                                    bias: stemConv.bias?.values, stride: [2, 2], dilation: [1, 1], same: false, groups: 1)
        XCTAssertEqual(reference.count, split.count)
        for (value, z) in zip(split, reference) { assertClose(value, z / (1 + Foundation.exp(-z)), "stem") }
    }
}
