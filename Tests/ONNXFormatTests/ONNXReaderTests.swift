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
        // Garbage, truncation, an empty file.
        let good = try model(input: [4], nodes: [node("Relu", ["x"], "y")], initializers: [], output: "y")
        XCTAssertNoThrow(try ONNXReader.decode(good, name: "good.onnx"))
        expectRefusal(good.prefix(good.count / 2), ["not a readable ONNX model"])
        expectRefusal(Data([0x08, 0x07] + (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) }), ["not a readable ONNX model"])
        expectRefusal(Data(), ["not a readable ONNX model"])
    }
}
