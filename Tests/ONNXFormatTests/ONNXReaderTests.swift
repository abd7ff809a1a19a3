import Foundation
import ModelIR
import ONNXFormat
import ONNXProto
import Runtime
import TestSupport
import XCTest

/// The ONNX reader on hand-built graphs: layouts, folding of PyTorch's shape arithmetic, and
/// clear refusals of what it does not read (hostile or unsupported content).
final class ONNXReaderTests: XCTestCase {
    private var random = SeededGenerator(seed: 11)

    private func tensor(_ name: String, _ shape: [Int], _ values: [Float]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = shape.map(Int64.init)
        t.floatData = values
        return t
    }

    private func ints(_ name: String, _ values: [Int64]) -> Onnx_TensorProto {
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        t.dims = [Int64(values.count)]
        t.int64Data = values
        return t
    }

    private func node(_ op: String, _ inputs: [String], _ output: String, ints: [String: [Int64]] = [:], int: [String: Int64] = [:]) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = output + "_node"
        n.input = inputs
        n.output = [output]
        for (key, value) in ints { var a = Onnx_AttributeProto(); a.name = key; a.type = .ints; a.ints = value; n.attribute.append(a) }
        for (key, value) in int { var a = Onnx_AttributeProto(); a.name = key; a.type = .int; a.i = value; n.attribute.append(a) }
        return n
    }

    private func model(input: [Int], nodes: [Onnx_NodeProto], initializers: [Onnx_TensorProto], output: String) throws -> Data {
        var info = Onnx_ValueInfoProto()
        info.name = "x"
        var type = Onnx_TypeProto.Tensor()
        type.elemType = 1
        var shape = Onnx_TensorShapeProto()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        shape.dim = [batch] + input.map { var d = Onnx_TensorShapeProto.Dimension(); d.dimValue = Int64($0); return d }
        type.shape = shape
        info.type.tensorType = type
        var out = Onnx_ValueInfoProto()
        out.name = output
        var graph = Onnx_GraphProto()
        graph.node = nodes
        graph.initializer = initializers
        graph.input = [info]
        graph.output = [out]
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var opset = Onnx_OperatorSetIdProto()
        opset.version = 17
        m.opsetImport = [opset]
        m.graph = graph
        return try m.serializedData()
    }

    /// Conv (NCHW weights) → BN → Relu → PyTorch's `x.view(x.size(0), -1)` (Shape, Gather, Unsqueeze,
    /// Concat, Reshape) → Gemm, against a plain NCHW reference: the flattening keeps ONNX's order.
    func testNCHWConvBNAndTheViewPattern() throws {
        let (c, h, w, o) = (2, 5, 4, 3)
        let kernel = random.floats(o * c * 9, in: -1...1), dense = random.floats(5 * o * h * w, in: -1...1)
        let gamma = random.floats(o, in: 0.5...1.5), beta = random.floats(o, in: -1...1), mean = random.floats(o, in: -1...1), variance = random.floats(o, in: 0.5...2)
        let nodes = [
            node("Conv", ["x", "w"], "conv", ints: ["kernel_shape": [3, 3], "pads": [1, 1, 1, 1]]),
            node("BatchNormalization", ["conv", "g", "b", "m", "v"], "bn"),
            node("Relu", ["bn"], "relu"),
            node("Shape", ["relu"], "shape"),
            node("Gather", ["shape", "zero"], "n"),
            node("Unsqueeze", ["n", "axes"], "n1"),
            node("Concat", ["n1", "minus1"], "target", int: ["axis": 0]),
            node("Reshape", ["relu", "target"], "flat"),
            node("Gemm", ["flat", "d"], "y", int: ["transB": 1]),
        ]
        var zero = ints("zero", [0]); zero.dims = []
        let data = try model(input: [c, h, w], nodes: nodes, initializers: [
            tensor("w", [o, c, 3, 3], kernel), tensor("g", [o], gamma), tensor("b", [o], beta), tensor("m", [o], mean), tensor("v", [o], variance),
            tensor("d", [5, o * h * w], dense), zero, ints("axes", [0]), ints("minus1", [-1]),
        ], output: "y")
        let imported = try ONNXReader.decode(data, name: "view.onnx")
        let executor = try Executor(graph: imported.graph)
        XCTAssertEqual(executor.inputShape, [c, h, w], "fed in the layout the graph declares")
        let x = random.floats(2 * c * h * w, in: -1...1)
        let got = try executor.run(x)
        for b in 0..<2 {
            var conv = [Double](repeating: 0, count: o * h * w)
            for oc in 0..<o { for yy in 0..<h { for xx in 0..<w {
                var sum = 0.0
                for ic in 0..<c { for ky in 0..<3 { for kx in 0..<3 {
                    let iy = yy + ky - 1, ix = xx + kx - 1
                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                    sum += Double(x[b * c * h * w + (ic * h + iy) * w + ix]) * Double(kernel[((oc * c + ic) * 3 + ky) * 3 + kx])
                } } }
                let s = Double(gamma[oc]) / (Double(variance[oc]) + 1e-5).squareRoot()
                conv[(oc * h + yy) * w + xx] = max(0, (sum - Double(mean[oc])) * s + Double(beta[oc]))
            } } }
            for j in 0..<5 {
                let expected = (0..<(o * h * w)).reduce(0.0) { $0 + conv[$1] * Double(dense[j * o * h * w + $1]) }
                XCTAssertEqual(Double(got[b * 5 + j]), expected, accuracy: 1e-4)
            }
        }
    }

    /// What PyTorch exports for torchvision's classifiers beyond the plain convs: a channel Split
    /// and Slice (ShuffleNet), a one-input Concat (DenseNet), MaxPool with ceil_mode=1 whose last
    /// window overhangs (GoogLeNet, SqueezeNet), AveragePool counting its pads (Inception v3), and
    /// a Slice of a Shape (the segmentation heads), against a plain NCHW reference.
    func testPyTorchChannelSplitsCeilPoolingAndCountedPads() throws {
        let (c, h, w) = (4, 8, 7)
        var split = node("Split", ["x", "sizes"], "a", int: ["axis": 1])
        split.output = ["a", "b"]
        let nodes = [
            split,
            node("Slice", ["b", "one", "three", "channel"], "b2"),
            node("Concat", ["a"], "a1", int: ["axis": 1]),
            node("Concat", ["a1", "b2"], "joined", int: ["axis": 1]),
            node("MaxPool", ["joined"], "pooled", ints: ["kernel_shape": [3, 3], "strides": [2, 2]], int: ["ceil_mode": 1]),
            node("AveragePool", ["pooled"], "averaged", ints: ["kernel_shape": [3, 3], "pads": [1, 1, 1, 1]], int: ["count_include_pad": 1]),
            node("Shape", ["averaged"], "shape"),
            node("Slice", ["shape", "zero", "one"], "n"),
            node("Concat", ["n", "minus1"], "target", int: ["axis": 0]),
            node("Reshape", ["averaged", "target"], "y"),
        ]
        let data = try model(input: [c, h, w], nodes: nodes, initializers: [
            ints("sizes", [1, 3]), ints("one", [1]), ints("three", [3]), ints("channel", [1]), ints("zero", [0]), ints("minus1", [-1]),
        ], output: "y")
        let imported = try ONNXReader.decode(data, name: "torch.onnx").graph
        let executor = try Executor(graph: imported)
        // 8 rows: floor 3 windows, ceil 4 (the last one overhangs by one row); 7 columns: 3 either way.
        let (ph, pw) = (4, 3), channels = [0, 2, 3]
        XCTAssertEqual(executor.outputShape, [channels.count * ph * pw])
        let x = random.floats(2 * c * h * w, in: -1...1)
        let got = try executor.run(x)
        for b in 0..<2 {
            var pooled = [Float](repeating: 0, count: channels.count * ph * pw)
            for (k, ch) in channels.enumerated() { for py in 0..<ph { for px in 0..<pw {
                var m = -Float.infinity
                for dy in 0..<3 { for dx in 0..<3 {
                    let (iy, ix) = (py * 2 + dy, px * 2 + dx)
                    if iy < h, ix < w { m = max(m, x[((b * c + ch) * h + iy) * w + ix]) }
                } }
                pooled[(k * ph + py) * pw + px] = m
            } } }
            for k in 0..<channels.count { for py in 0..<ph { for px in 0..<pw {
                var sum = 0.0
                for dy in -1...1 { for dx in -1...1 {
                    let (iy, ix) = (py + dy, px + dx)
                    if iy >= 0, iy < ph, ix >= 0, ix < pw { sum += Double(pooled[(k * ph + iy) * pw + ix]) }
                } }
                // The pads count: always nine.
                XCTAssertEqual(Double(got[b * pooled.count + (k * ph + py) * pw + px]), sum / 9, accuracy: 1e-6)
            } } }
        }
        // Written back to ONNX (the slice as a Slice) and read again: the same numbers.
        let again = try Executor(graph: try ONNXReader.decode(try ONNXWriter.encode(imported), name: "again.onnx").graph)
        XCTAssertEqual(try again.run(x), got)
        // An average whose ceil-mode window overhangs has no IR form: refused, named.
        let overhang = try model(input: [c, h, w], nodes: [
            node("AveragePool", ["x"], "y", ints: ["kernel_shape": [3, 3], "strides": [2, 2]], int: ["ceil_mode": 1]),
        ], initializers: [], output: "y")
        expectRefusal(overhang, ["y_node", "ceil_mode=1"])
        // A split whose sizes do not add up to the axis.
        var bad = node("Split", ["x", "sizes"], "a", int: ["axis": 1])
        bad.output = ["a", "b"]
        expectRefusal(try model(input: [c, h, w], nodes: [bad], initializers: [ints("sizes", [1, 2])], output: "a"), ["a_node", "split sizes"])
    }

    /// PyTorch's channels-last blocks (ConvNeXt's: permute to NHWC, LayerNorm over the channels,
    /// Linear, the exact GELU as Div/Erf/Add/Mul/Mul, Linear, permute back, a per-channel layer
    /// scale, the residual) plan with no transpose, the Linears as Dense steps with their biases
    /// and the GELU in the first one; against a plain NCHW reference in Double.
    func testChannelsLastBlocksPlanWithoutTransposes() throws {
        let (c, h, w, hidden) = (4, 3, 5, 6)
        let gamma = random.floats(c, in: 0.5...1.5), beta = random.floats(c, in: -1...1)
        let w1 = random.floats(c * hidden, in: -1...1), b1 = random.floats(hidden, in: -1...1)
        let w2 = random.floats(hidden * c, in: -1...1), b2 = random.floats(c, in: -1...1), scale = random.floats(c, in: -2...2)
        let nodes = [
            node("Transpose", ["x"], "nhwc", ints: ["perm": [0, 2, 3, 1]]),
            node("LayerNormalization", ["nhwc", "gamma", "beta"], "ln", int: ["axis": -1]),
            node("MatMul", ["ln", "w1"], "fc1"),
            node("Add", ["b1", "fc1"], "fc1b"),
            node("Div", ["fc1b", "sqrt2"], "scaled"),
            node("Erf", ["scaled"], "erf"),
            node("Add", ["erf", "one"], "shifted"),
            node("Mul", ["fc1b", "shifted"], "product"),
            node("Mul", ["product", "half"], "gelu"),
            node("MatMul", ["gelu", "w2"], "fc2"),
            node("Add", ["fc2", "b2"], "fc2b"),
            node("Transpose", ["fc2b"], "nchw", ints: ["perm": [0, 3, 1, 2]]),
            node("Mul", ["layer_scale", "nchw"], "scaledBlock"),
            node("Add", ["scaledBlock", "x"], "y"),
        ]
        let data = try model(input: [c, h, w], nodes: nodes, initializers: [
            tensor("gamma", [c], gamma), tensor("beta", [c], beta), tensor("w1", [c, hidden], w1), tensor("b1", [hidden], b1),
            tensor("w2", [hidden, c], w2), tensor("b2", [c], b2), tensor("layer_scale", [c, 1, 1], scale),
            tensor("sqrt2", [], [1.4142135]), tensor("one", [], [1]), tensor("half", [], [0.5]),
        ], output: "y")
        let imported = try ONNXReader.decode(data, name: "convnext.onnx").graph
        let executor = try Executor(graph: imported)
        let operations = executor.stepProfile.map(\.operation)
        // Only the NCHW input and output change layout (the block's two permutes move nothing).
        XCTAssertEqual(operations.filter { $0 == "transpose" }.count, 2, "\(operations)")
        XCTAssertEqual(operations.filter { $0 == "dense" }.count, 2, "\(operations)")
        XCTAssertFalse(operations.contains("multiply"), "the GELU is one activation, fused: \(operations)")
        let x = random.floats(2 * c * h * w, in: -2...2)
        let got = try executor.run(x)
        for b in 0..<2 { for yy in 0..<h { for xx in 0..<w {
            let pixel = (0..<c).map { Double(x[((b * c + $0) * h + yy) * w + xx]) }
            let mean = pixel.reduce(0, +) / Double(c)
            let variance = pixel.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c)
            let ln = (0..<c).map { (pixel[$0] - mean) / (variance + 1e-5).squareRoot() * Double(gamma[$0]) + Double(beta[$0]) }
            let g = (0..<hidden).map { j -> Double in
                let v = (0..<c).reduce(Double(b1[j])) { $0 + ln[$1] * Double(w1[$1 * hidden + j]) }
                return 0.5 * v * (1 + Foundation.erf(v / 2.0.squareRoot()))
            }
            for k in 0..<c {
                let fc2 = (0..<hidden).reduce(Double(b2[k])) { $0 + g[$1] * Double(w2[$1 * c + k]) }
                let e = fc2 * Double(scale[k]) + pixel[k]
                XCTAssertEqual(Double(got[((b * c + k) * h + yy) * w + xx]), e, accuracy: 1e-5 * max(1, abs(e)), "b\(b) y\(yy) x\(xx) c\(k)")
            }
        } } }
    }

    /// A transposed value read by an operator that needs the standard layout (a Flatten, in the
    /// transposed order), and a MatMul over the last axis of an NCHW map (its width).
    func testTransposedValuesKeepTheirOrderWhereReadOtherwise() throws {
        let (c, h, w, units) = (3, 2, 4, 5)
        let dense = random.floats(units * h * w * c, in: -1...1), wide = random.floats(w * units, in: -1...1)
        let flattened = try model(input: [c, h, w], nodes: [
            node("Transpose", ["x"], "nhwc", ints: ["perm": [0, 2, 3, 1]]),
            node("Relu", ["nhwc"], "relu"),
            node("Flatten", ["relu"], "flat"),
            node("Gemm", ["flat", "d"], "y", int: ["transB": 1]),
        ], initializers: [tensor("d", [units, h * w * c], dense)], output: "y")
        let byWidth = try model(input: [c, h, w], nodes: [node("MatMul", ["x", "wide"], "y")],
                                initializers: [tensor("wide", [w, units], wide)], output: "y")
        let x = random.floats(2 * c * h * w, in: -1...1)
        let first = try Executor(graph: try ONNXReader.decode(flattened, name: "flat.onnx").graph).run(x)
        let second = try Executor(graph: try ONNXReader.decode(byWidth, name: "wide.onnx").graph)
        XCTAssertEqual(second.outputShape, [c, h, units])
        let product = try second.run(x)
        for b in 0..<2 {
            // (H, W, C) order, through a ReLU.
            let nhwc = (0..<(h * w * c)).map { i in max(0, Double(x[((b * c + i % c) * h + i / (w * c)) * w + (i / c) % w])) }
            for j in 0..<units {
                let e = (0..<nhwc.count).reduce(0.0) { $0 + nhwc[$1] * Double(dense[j * nhwc.count + $1]) }
                XCTAssertEqual(Double(first[b * units + j]), e, accuracy: 1e-5 * max(1, abs(e)))
            }
            for k in 0..<c { for yy in 0..<h { for j in 0..<units {
                let e = (0..<w).reduce(0.0) { $0 + Double(x[((b * c + k) * h + yy) * w + $1]) * Double(wide[$1 * units + j]) }
                XCTAssertEqual(Double(product[((b * c + k) * h + yy) * units + j]), e, accuracy: 1e-5 * max(1, abs(e)))
            } } }
        }
    }

    private func expectRefusal(_ data: Data, _ fragments: [String], line: UInt = #line) {
        XCTAssertThrowsError(try ONNXReader.decode(data, name: "bad.onnx"), line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("bad.onnx"), text, line: line)
            for fragment in fragments { XCTAssertTrue(text.contains(fragment), "\(text) lacks \(fragment)", line: line) }
        }
    }

    func testDamagedAndUnsupportedContentIsRefusedClearly() throws {
        // An operator bnkit does not read: named with the node.
        expectRefusal(try model(input: [4], nodes: [node("Einsum", ["x"], "y")], initializers: [], output: "y"), ["y_node", "Einsum"])
        // A tensor whose dimensions need more values than it holds (no allocation from the dimensions).
        var huge = tensor("w", [1 << 20, 1 << 10], [1, 2, 3])
        huge.floatData = [1, 2, 3]
        expectRefusal(try model(input: [4], nodes: [node("Gemm", ["x", "w"], "y")], initializers: [huge], output: "y"), ["tensor 'w'", "need"])
        // External data files are never read.
        var external = tensor("w", [4, 2], [])
        external.dataLocation = .external
        var entry = Onnx_StringStringEntryProto(); entry.key = "location"; entry.value = "/etc/passwd"
        external.externalData = [entry]
        expectRefusal(try model(input: [4], nodes: [node("Gemm", ["x", "w"], "y")], initializers: [external], output: "y"), ["external file"])
        // A Gemm whose weights do not fit the input: the node is named.
        expectRefusal(try model(input: [4], nodes: [node("Gemm", ["x", "w"], "y")], initializers: [tensor("w", [3, 2], random.floats(6, in: -1...1))], output: "y"),
                      ["y_node", "Gemm"])
        // An Identity, Dropout or Cast without an input (found by fuzz-onnx: it trapped).
        for op in ["Identity", "Dropout", "Cast"] {
            expectRefusal(try model(input: [4], nodes: [node("Relu", ["x"], "r"), node(op, [], "y")], initializers: [], output: "y"),
                          ["y_node", op, "missing input"])
        }
        // A ConvTranspose whose output_padding reaches past the positions any tap writes (only the bias
        // there): no crop of Keras's valid form gives it; pads and output_padding that fit import.
        let weights = tensor("w", [2, 3, 3, 3], random.floats(54, in: -1...1))
        for (pads, extra, refused): ([Int64], [Int64], Bool) in [([0, 0, 0, 0], [1, 1], true), ([1, 1, 1, 1], [1, 1], false), ([1, 0, 1, 0], [0, 0], false)] {
            let data = try model(input: [2, 4, 5], nodes: [node("ConvTranspose", ["x", "w"], "y", ints: ["strides": [2, 2], "pads": pads, "output_padding": extra])],
                                 initializers: [weights], output: "y")
            if refused {
                expectRefusal(data, ["y_node", "ConvTranspose", "output_padding"])
            } else {
                XCTAssertNoThrow(try ONNXReader.decode(data, name: "good.onnx"), "\(pads) \(extra)")
            }
        }
        // Garbage, truncation, an empty file.
        let good = try model(input: [4], nodes: [node("Relu", ["x"], "y")], initializers: [], output: "y")
        XCTAssertNoThrow(try ONNXReader.decode(good, name: "good.onnx"))
        expectRefusal(good.prefix(good.count / 2), ["not a readable ONNX model"])
        expectRefusal(Data([0x08, 0x07] + (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) }), ["not a readable ONNX model"])
        expectRefusal(Data(), ["not a readable ONNX model"])
    }
}
