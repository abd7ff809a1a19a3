import Foundation
import ModelIR
import ONNXProto

extension Onnx_NodeProto {
    func attribute(_ name: String) -> Onnx_AttributeProto? { attribute.first { $0.name == name } }
    func int(_ name: String) -> Int64? { attribute(name).map(\.i) }
    func ints(_ name: String) -> [Int64]? { attribute(name).map(\.ints) }
    func float(_ name: String) -> Float? { attribute(name).map(\.f) }
    func string(_ name: String) -> String? { attribute(name).map { String(decoding: $0.s, as: UTF8.self) } }
}

extension Importer {
    /// The operators read; anything else is refused with its name.
    static let supported: Set<String> = [
        "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid",
        "HardSwish", "Tanh", "Softmax", "Elu", "Selu", "Softplus", "Softsign", "Exp", "Add", "Sub", "Mul", "Div", "Concat",
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Pad", "Squeeze",
        "Unsqueeze", "Identity", "Dropout", "Slice", "Split", "LayerNormalization", "Erf", "Constant", "Resize", "Upsample", "ReduceMean", "Shape", "Gather", "Cast", "Max", "Min", "Sum", "Mean",
    ]

    mutating func set(_ node: Onnx_NodeProto, _ value: ImportedValue) throws {
        guard let output = node.output.first, !output.isEmpty else { throw unsupported(node, "a node without an output") }
        values[output] = value
        arranged[output] = nil
    }

    mutating func setTensor(_ node: Onnx_NodeProto, _ irNode: String, shape: [Int]) throws {
        try set(node, .tensor(node: irNode, shape: shape))
    }

    var baseName: (Onnx_NodeProto) -> String { { $0.name.isEmpty ? ($0.output.first ?? $0.opType) : $0.name } }

    // MARK: - Windows

    /// kernel_shape/strides/dilations/pads/auto_pad of a conv or pool over `spatial` (1 or 2 axes):
    /// the IR window (a [1, k] window for 1-D) and any explicit padding that is neither valid
    /// nor TensorFlow's same ([top, bottom, left, right]); with `explicit`, any non-zero padding.
    /// A pool's ceil_mode=1 (PyTorch's ceil_mode=True) becomes padding after the end, as much as
    /// the last window overhangs (a window starting past the input and its leading padding is
    /// dropped, as PyTorch and onnxruntime do); `overhang` says whether there was any.
    func window(_ node: Onnx_NodeProto, spatial: [Int], kernel: [Int], explicit: Bool = false) throws
        -> (window: Window, pads: [Int]?, overhang: Bool) {
        let n = spatial.count
        guard kernel.count == n else { throw unsupported(node, "kernel_shape \(kernel) for an input with \(n) spatial axes") }
        let strides = (node.ints("strides") ?? []).map { Int($0) }, dilations = (node.ints("dilations") ?? []).map { Int($0) }
        let s = strides.isEmpty ? [Int](repeating: 1, count: n) : strides, d = dilations.isEmpty ? [Int](repeating: 1, count: n) : dilations
        guard s.count == n, d.count == n, (s + d + kernel).allSatisfy({ $0 >= 1 && $0 < 1 << 16 }) else {
            throw unsupported(node, "strides \(strides), dilations \(dilations) or kernel \(kernel)")
        }
        let ceilMode = node.int("ceil_mode") ?? 0 != 0
        var pads = (node.ints("pads") ?? []).map { Int($0) }
        let autoPad = node.string("auto_pad") ?? "NOTSET"
        let size2 = n == 2 ? kernel : [1] + kernel, strides2 = n == 2 ? s : [1] + s, dilation2 = n == 2 ? d : [1] + d
        let sameWindow = try Window(size: size2, strides: strides2, dilation: dilation2, padding: .same)
        let spatial2 = n == 2 ? spatial : [1] + spatial
        // TensorFlow's same padding for this geometry, [begin…, end…] in ONNX order.
        var same = [Int](repeating: 0, count: 2 * n)
        for (i, axis) in (n == 2 ? [0, 1] : [1]).enumerated().map({ ($0.offset, $0.element) }) {
            let (length, before) = sameWindow.output(axis: axis, input: spatial2[axis])
            let effective = (size2[axis] - 1) * dilation2[axis] + 1
            same[i] = before
            same[n + i] = max((length - 1) * strides2[axis] + effective - spatial2[axis] - before, 0)
        }
        switch autoPad {
        case "VALID": pads = [Int](repeating: 0, count: 2 * n)
        case "SAME_UPPER": pads = same
        case "SAME_LOWER":
            // The odd pixel before, not after.
            pads = (0..<n).map { (same[$0] + same[n + $0] + 1) / 2 } + (0..<n).map { (same[$0] + same[n + $0]) / 2 }
        case "NOTSET": if pads.isEmpty { pads = [Int](repeating: 0, count: 2 * n) }
        default: throw unsupported(node, "auto_pad \(autoPad)")
        }
        guard pads.count == 2 * n, pads.allSatisfy({ $0 >= 0 && $0 < 1 << 16 }) else { throw unsupported(node, "pads \(pads)") }
        var overhang = false
        if ceilMode, autoPad == "NOTSET" || autoPad == "VALID" {
            for i in 0..<n {
                let effective = (kernel[i] - 1) * d[i] + 1, padded = spatial[i] + pads[i] + pads[n + i]
                guard padded >= effective else { throw unsupported(node, "a window larger than its padded input") }
                var count = (padded - effective + s[i] - 1) / s[i] + 1
                if (count - 1) * s[i] >= spatial[i] + pads[i] { count -= 1 }
                let extra = (count - 1) * s[i] + effective - padded
                if extra > 0 { pads[n + i] += extra; overhang = true }
            }
        }
        let valid = try Window(size: size2, strides: strides2, dilation: dilation2, padding: .valid)
        if pads.allSatisfy({ $0 == 0 }) { return (valid, nil, overhang) }
        if pads == same, !explicit { return (sameWindow, nil, overhang) }
        // Explicit: [top, bottom, left, right] for the IR.
        return (valid, n == 2 ? [pads[0], pads[2], pads[1], pads[3]] : [0, 0, pads[0], pads[1]], overhang)
    }

    // MARK: - Nodes

    mutating func importNode(_ node: Onnx_NodeProto) throws {
        guard node.domain.isEmpty || node.domain == "ai.onnx" else { throw unsupported(node, "the operator domain '\(node.domain)'") }
        guard Self.supported.contains(node.opType) else { throw unsupported(node, "the operator") }
        let base = baseName(node)
        // Operators on constants only: folded (shape arithmetic).
        let inputValues = try node.input.filter { !$0.isEmpty }.map { try value($0, of: node) }
        if node.opType != "Constant", !inputValues.isEmpty,
           inputValues.allSatisfy({ if case .constant = $0 { true } else { false } }) {
            return try set(node, .constant(try fold(node, inputValues.map { if case .constant(let c) = $0 { c } else { fatalError() } })))
        }
        if try importArranged(node) { return }
        for name in node.input where arranged[name] != nil { try standardize(name, base: base) }
        switch node.opType {
        case "Constant":
            guard let attribute = node.attribute.first else { throw unsupported(node, "a Constant without a value") }
            switch attribute.name {
            case "value": try set(node, .constant(try constant(attribute.t)))
            case "value_float": try set(node, .constant(ConstantArray(shape: [], floats: [attribute.f])))
            case "value_floats": try set(node, .constant(ConstantArray(shape: [attribute.floats.count], floats: attribute.floats)))
            case "value_int": try set(node, .constant(ConstantArray(shape: [], ints: [attribute.i])))
            case "value_ints": try set(node, .constant(ConstantArray(shape: [attribute.ints.count], ints: attribute.ints)))
            default: throw unsupported(node, "a Constant given as '\(attribute.name)'")
            }
        case "Shape":
            let (_, shape) = try tensorInput(node, 0)
            var dims = [Importer.batch] + shape.map(Int64.init)
            let start = Int(node.int("start") ?? 0), end = Int(node.int("end") ?? Int64(dims.count))
            let r = dims.count
            let s = max(0, min(r, start < 0 ? start + r : start)), e = max(s, min(r, end < 0 ? end + r : end))
            dims = Array(dims[s..<e])
            try set(node, .constant(ConstantArray(shape: [dims.count], ints: dims)))
        case "Identity", "Dropout", "Cast":
            if node.opType == "Cast", let to = node.int("to"), to != Int64(Onnx_TensorProto.DataType.float.rawValue) {
                throw unsupported(node, "a cast of a computed tensor to type \(to)")
            }
            guard let first = node.input.first, !first.isEmpty else { throw unsupported(node, "a missing input 0") }
            try set(node, try value(first, of: node))
        case "Conv": try convolution(node)
        case "ConvTranspose": try transposedConvolution(node)
        case "BatchNormalization":
            let (x, shape) = try tensorInput(node, 0)
            if node.int("training_mode") ?? 0 != 0 { throw unsupported(node, "training_mode=1") }
            guard let scale = try constantInput(node, 1), let bias = try constantInput(node, 2), let mean = try constantInput(node, 3),
                  let variance = try constantInput(node, 4) else { throw unsupported(node, "missing statistics") }
            let channels = shape.first ?? 0
            guard [scale, bias, mean, variance].allSatisfy({ $0.count == channels }) else { throw unsupported(node, "statistics of the wrong size for \(channels) channels") }
            let bn: BatchNorm
            do {
                bn = try BatchNorm(gamma: Tensor(scale.asFloats), beta: Tensor(bias.asFloats), movingMean: Tensor(mean.asFloats),
                                   movingVariance: Tensor(variance.asFloats), epsilon: Double(node.float("epsilon") ?? 1e-5))
                _ = try bn.affineCoefficients()
            } catch { throw unsupported(node, "statistics that are not valid (\(error))") }
            try setTensor(node, try emit(base, .batchNorm(bn), [x], for: node), shape: shape)
        case "Relu", "Erf", "Sigmoid", "Tanh", "HardSwish", "Softplus", "Softsign", "Exp", "Selu", "Elu", "LeakyRelu", "HardSigmoid", "Clip", "Softmax":
            let (x, shape) = try tensorInput(node, 0)
            try setTensor(node, try emit(base, .activation(try activation(node, shape: shape)), [x], for: node), shape: shape)
        case "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean": try elementwise(node)
        case "Gemm", "MatMul": try dense(node)
        case "Concat":
            let tensors = try node.input.indices.map { try tensorInput(node, $0) }
            // torch.cat of a one-element list (DenseNet's first layer of each block).
            if tensors.count == 1 { return try setTensor(node, tensors[0].node, shape: tensors[0].shape) }
            let rank = tensors[0].shape.count
            guard tensors.allSatisfy({ $0.shape.count == rank }), var axis = node.int("axis").map(Int.init) else {
                throw unsupported(node, "joining tensors of different ranks, or no axis")
            }
            if axis < 0 { axis += rank + 1 }
            guard axis >= 1, axis <= rank else { throw unsupported(node, "joining along axis \(axis) (the batch)") }
            let irAxis = rank == 1 ? 0 : (axis == 1 ? rank - 1 : axis - 2)
            var shape = tensors[0].shape
            shape[axis - 1] = tensors.reduce(0) { $0 + $1.shape[axis - 1] }
            try setTensor(node, try emit(base, .concatenate(axis: irAxis), tensors.map(\.node), for: node), shape: shape)
        case "MaxPool", "AveragePool": try pooling(node)
        case "GlobalAveragePool", "GlobalMaxPool":
            let (x, shape) = try tensorInput(node, 0)
            guard shape.count >= 2 else { throw unsupported(node, "a global pooling of a rank-2 tensor") }
            let out = try emit(base, .globalPool(kind: node.opType == "GlobalMaxPool" ? .max : .average, keepDims: true), [x], for: node)
            try setTensor(node, out, shape: [shape[0]] + [Int](repeating: 1, count: shape.count - 1))
        case "ReduceMean":
            let (x, shape) = try tensorInput(node, 0)
            let axesInput = try constantInput(node, 1)?.asInts
            var axes = (node.ints("axes") ?? axesInput ?? []).map { Int($0) < 0 ? Int($0) + shape.count + 1 : Int($0) }
            axes.sort()
            guard shape.count >= 2, axes == Array(2...shape.count) else { throw unsupported(node, "a mean over axes \(axes) (the spatial axes are supported)") }
            let keep = node.int("keepdims") ?? 1 != 0
            let out = try emit(base, .globalPool(kind: .average, keepDims: keep), [x], for: node)
            try setTensor(node, out, shape: keep ? [shape[0]] + [Int](repeating: 1, count: shape.count - 1) : [shape[0]])
        case "Flatten":
            let (x, shape) = try tensorInput(node, 0)
            guard (node.int("axis") ?? 1) == 1 else { throw unsupported(node, "axis \(node.int("axis") ?? 1) (1 is supported)") }
            let target = [shape.reduce(1, *)]
            try setTensor(node, try reshape(x, from: shape, to: target, base: base), shape: target)
        case "Reshape", "Squeeze", "Unsqueeze":
            let (x, shape) = try tensorInput(node, 0)
            let target = try reshapeTarget(node, shape: shape)
            guard target.reduce(1, *) == shape.reduce(1, *) else { throw unsupported(node, "reshaping \(shape) to \(target)") }
            try setTensor(node, try reshape(x, from: shape, to: target, base: base), shape: target)
        case "Pad":
            let (x, shape) = try tensorInput(node, 0)
            let padsInput = try constantInput(node, 1)?.asInts, fillInput = try constantInput(node, 2)?.asFloats.first
            let pads = (node.ints("pads") ?? padsInput ?? []).map { Int($0) }
            let fill = node.float("value") ?? fillInput ?? 0
            let r = shape.count + 1
            guard (node.string("mode") ?? "constant") == "constant", pads.count == 2 * r, shape.count == 3 || shape.count == 2,
                  pads[0] == 0, pads[1] == 0, pads[r] == 0, pads[r + 1] == 0, pads.allSatisfy({ $0 >= 0 && $0 < 1 << 16 }) else {
                throw unsupported(node, "padding \(pads) in mode \(node.string("mode") ?? "constant") (constant padding of the spatial axes is supported)")
            }
            let irPads = shape.count == 3 ? [pads[2], pads[r + 2], pads[3], pads[r + 3]] : [0, 0, pads[2], pads[r + 2]]
            let op: Op = fill == 0 ? .zeroPadding2d(irPads) : .pad2d(pads: irPads, value: fill)
            let out = try emit(base, op, [x], for: node)
            var outShape = shape
            for i in 1..<shape.count { outShape[i] += pads[i + 1] + pads[r + i + 1] }
            try setTensor(node, out, shape: outShape)
        case "Resize", "Upsample": try resize(node)
        case "Slice": try slice(node)
        case "Split": try split(node)
        default:
            throw unsupported(node, "the operator")
        }
    }

    // MARK: - Activations

    func activation(_ node: Onnx_NodeProto, shape: [Int]) throws -> Activation {
        switch node.opType {
        case "Relu": return .relu
        case "Erf": return .erf
        case "Sigmoid": return .sigmoid
        case "Tanh": return .tanh
        case "HardSwish": return .hardSwish
        case "Softplus": return .softplus
        case "Softsign": return .softsign
        case "Exp": return .exponential
        case "Elu": return .elu(alpha: node.float("alpha") ?? 1)
        case "LeakyRelu": return .leakyRelu(alpha: node.float("alpha") ?? 0.01)
        case "Selu":
            guard abs((node.float("alpha") ?? 1.6732632) - 1.6732632) < 1e-6, abs((node.float("gamma") ?? 1.0507009) - 1.0507009) < 1e-6 else {
                throw unsupported(node, "Selu with other than the standard alpha and gamma")
            }
            return .selu
        case "HardSigmoid":
            guard (node.float("beta") ?? 0.5) == 0.5 else { throw unsupported(node, "beta \(node.float("beta") ?? 0) (0.5 is supported)") }
            return .hardSigmoid(slope: node.float("alpha") ?? 0.2)
        case "Clip":
            let low = opset >= 11 ? try constantInput(node, 1)?.asFloats.first : node.float("min")
            let high = opset >= 11 ? try constantInput(node, 2)?.asFloats.first : node.float("max")
            guard low == 0 else { throw unsupported(node, "a clip below at \(low.map { "\($0)" } ?? "−∞") (0 is supported)") }
            if high == 6 { return .relu6 }
            return high.map { .clippedRelu(maxValue: $0, negativeSlope: 0, threshold: 0) } ?? .relu
        case "Softmax":
            var axis = Int(node.int("axis") ?? (opset >= 13 ? -1 : 1))
            if axis < 0 { axis += shape.count + 1 }
            guard axis == 1, shape.count == 1 || opset >= 13 else {
                throw unsupported(node, "a softmax over axis \(axis) of a rank-\(shape.count + 1) tensor (over the channels is supported)")
            }
            return .softmax
        default:
            throw unsupported(node, "the activation")
        }
    }
}
