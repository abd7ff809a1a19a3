import ModelIR
import ONNXProto

/// One IR node as ONNX nodes (see `Builder`'s layout rules).
extension Builder {
    private func fail(_ node: Node, _ detail: String) -> ONNXWriteError { .unsupported(node: node.name, detail: detail) }

    /// Window attributes for a tensor of IR shape `input` (rank 3: two spatial axes; rank 2: one).
    private func windowAttributes(_ window: Window, input: [Int], dilations: Bool = true) -> [String: Attribute] {
        let axes = input.count == 3 ? [0, 1] : [1]
        let spatial = input.count == 3 ? [input[0], input[1]] : [1, input[0]]
        var begin: [Int64] = [], end: [Int64] = []
        for axis in axes {
            let (length, before) = window.output(axis: axis, input: spatial[axis])
            let effective = (window.size[axis] - 1) * window.dilation[axis] + 1
            begin.append(Int64(before))
            end.append(Int64(max((length - 1) * window.strides[axis] + effective - spatial[axis] - before, 0)))
        }
        var attributes: [String: Attribute] = [
            "kernel_shape": .ints(axes.map { Int64(window.size[$0]) }),
            "strides": .ints(axes.map { Int64(window.strides[$0]) }),
            "pads": .ints(begin + end),
        ]
        if dilations { attributes["dilations"] = .ints(axes.map { Int64(window.dilation[$0]) }) }
        return attributes
    }

    /// Keras conv kernel (…spatial, in, out) → ONNX (out, in, …spatial).
    private static func convWeights(_ kernel: Tensor) -> (shape: [Int], values: [Float]) {
        let shape = kernel.shape, rank = shape.count
        let spatial = Array(shape[0..<(rank - 2)]), cin = shape[rank - 2], cout = shape[rank - 1]
        let taps = spatial.reduce(1, *)
        let values = kernel.values
        var out = [Float](repeating: 0, count: values.count)
        for t in 0..<taps { for i in 0..<cin { for o in 0..<cout { out[(o * cin + i) * taps + t] = values[(t * cin + i) * cout + o] } } }
        return ([cout, cin] + spatial, out)
    }

    mutating func emit(_ node: Node) throws {
        let inputs = try node.inputs.map { name -> String in
            guard let v = value[name] else { throw fail(node, "reads '\(name)', which has no value") }
            return v
        }
        let inShapes = node.inputs.map { shapes[$0]! }
        let outShape = shapes[node.name]!
        // Moving values between layouts works at any rank (a channel shuffle's (H, W, 2, C/2) views).
        let anyRank: Bool = switch node.operation {
        case .transpose, .reshape, .flatten, .identity, .slice, .concatenate: true
        default: false
        }
        guard anyRank || (outShape.count <= 3 && inShapes.allSatisfy({ $0.count <= 3 })) else {
            throw fail(node, "tensors of rank \(max(outShape.count, inShapes.map(\.count).max() ?? 0)) (up to (height, width, channels) is written)")
        }
        let x = inputs.first ?? ""
        let rank = inShapes.first?.count ?? 0
        var out: String
        switch node.operation {
        case .input:
            return
        case .dense(let d):
            let bias = constant(node.name + "/bias", shape: [d.units], values: d.bias?.values ?? [Float](repeating: 0, count: d.units))
            if rank == 1 {
                let w = constant(node.name + "/kernel", shape: d.kernel.shape, values: d.kernel.values)
                out = add("Gemm", [x, w, bias], name: node.name)
            } else {
                // On the channel axis of a map: a 1×1 convolution.
                let (shape, values) = Self.convWeights(d.kernel)
                let w = constant(node.name + "/kernel", shape: shape + [Int](repeating: 1, count: rank - 1), values: values)
                out = add("Conv", [x, w, bias], name: node.name, ["kernel_shape": .ints([Int64](repeating: 1, count: rank - 1))])
            }
            out = try activate(out, d.activation, node: node, rank: outShape.count)
        case .conv2d(let c):
            let (shape, values) = Self.convWeights(c.kernel)
            let w = constant(node.name + "/kernel", shape: shape, values: values)
            var attributes = windowAttributes(c.window, input: inShapes[0])
            attributes["group"] = .int(Int64(c.groups))
            out = add("Conv", [x, w] + (c.bias.map { [constant(node.name + "/bias", shape: [c.outputChannels], values: $0.values)] } ?? []),
                      name: node.name, attributes)
            out = try activate(out, c.activation, node: node, rank: outShape.count)
        case .depthwiseConv2d(let c):
            out = depthwise(x, c.kernel, bias: c.bias, window: c.window, input: inShapes[0], name: node.name)
            out = try activate(out, c.activation, node: node, rank: outShape.count)
        case .separableConv2d(let c):
            let middle = depthwise(x, c.depthwiseKernel, bias: nil, window: c.window, input: inShapes[0], name: node.name + "/depthwise")
            let (shape, values) = Self.convWeights(c.pointwiseKernel)
            let w = constant(node.name + "/pointwise_kernel", shape: shape, values: values)
            out = add("Conv", [middle, w] + (c.bias.map { [constant(node.name + "/bias", shape: [c.outputChannels], values: $0.values)] } ?? []),
                      name: node.name, ["kernel_shape": .ints([Int64](repeating: 1, count: outShape.count - 1))])
            out = try activate(out, c.activation, node: node, rank: outShape.count)
        case .conv2dTranspose(let c):
            // Keras (kh, kw, out, in) → ONNX (in, out, kh, kw).
            let (kh, kw, cout, cin) = (c.kernel.shape[0], c.kernel.shape[1], c.kernel.shape[2], c.kernel.shape[3])
            let values = c.kernel.values
            var w = [Float](repeating: 0, count: values.count)
            for t in 0..<(kh * kw) { for o in 0..<cout { for i in 0..<cin { w[(i * cout + o) * kh * kw + t] = values[(t * cout + o) * cin + i] } } }
            var begin: [Int64] = [], end: [Int64] = [], extra: [Int64] = []
            for axis in 0..<2 {
                let (length, before) = c.output(axis: axis, input: inShapes[0][axis])
                let full = (inShapes[0][axis] - 1) * c.strides[axis] + c.size[axis]
                begin.append(Int64(before))
                end.append(Int64(max(full - length - before, 0)))
                extra.append(Int64(max(length - full, 0)))
            }
            var attributes: [String: Attribute] = ["kernel_shape": .ints([Int64(kh), Int64(kw)]), "strides": .ints(c.strides.map(Int64.init)),
                                                   "pads": .ints(begin + end)]
            if extra.contains(where: { $0 > 0 }) { attributes["output_padding"] = .ints(extra) }
            out = add("ConvTranspose", [x, constant(node.name + "/kernel", shape: [cin, cout, kh, kw], values: w)]
                      + (c.bias.map { [constant(node.name + "/bias", shape: [cout], values: $0.values)] } ?? []), name: node.name, attributes)
            out = try activate(out, c.activation, node: node, rank: outShape.count)
        case .batchNorm(let bn):
            let n = bn.channels
            out = add("BatchNormalization", [
                x,
                constant(node.name + "/gamma", shape: [n], values: bn.gamma?.values ?? [Float](repeating: 1, count: n)),
                constant(node.name + "/beta", shape: [n], values: bn.beta?.values ?? [Float](repeating: 0, count: n)),
                constant(node.name + "/moving_mean", shape: [n], values: bn.movingMean.values),
                constant(node.name + "/moving_variance", shape: [n], values: bn.movingVariance.values),
            ], name: node.name, ["epsilon": .float(Float(bn.epsilon))])
        case .affine(let a):
            let shape = Self.channelShape(a.channels, rank: rank)
            let scaled = add("Mul", [x, constant(node.name + "/scale", shape: shape, values: a.scale.values)], name: node.name)
            out = add("Add", [scaled, constant(node.name + "/shift", shape: shape, values: a.shift.values)], name: node.name)
        case .activation(let a):
            out = try activate(x, a, node: node, rank: rank)
            if out == x { out = add("Identity", [x], name: node.name) }
        case .pool2d(let p):
            var attributes = windowAttributes(p.window, input: inShapes[0], dilations: false)
            if p.kind == .average { attributes["count_include_pad"] = .int(0) }
            out = add(p.kind == .max ? "MaxPool" : "AveragePool", [x], name: node.name, attributes)
        case .globalPool(let kind, let keepDims):
            out = add(kind == .max ? "GlobalMaxPool" : "GlobalAveragePool", [x], name: node.name)
            if !keepDims { out = add("Flatten", [out], name: node.name, ["axis": .int(1)]) }
        case .zeroPadding2d(let p):
            let pads: [Int64] = rank == 3 ? [0, 0, Int64(p[0]), Int64(p[2]), 0, 0, Int64(p[1]), Int64(p[3])] : [0, 0, Int64(p[2]), 0, 0, Int64(p[3])]
            out = add("Pad", [x, constantInt64(node.name + "/pads", pads)], name: node.name, ["mode": .string("constant")])
        case .pad2d(let p, let fill):
            let pads: [Int64] = rank == 3 ? [0, 0, Int64(p[0]), Int64(p[2]), 0, 0, Int64(p[1]), Int64(p[3])] : [0, 0, Int64(p[2]), 0, 0, Int64(p[3])]
            out = add("Pad", [x, constantInt64(node.name + "/pads", pads), constant(node.name + "/value", shape: [], values: [fill])],
                      name: node.name, ["mode": .string("constant")])
        case .transpose(let perm):
            // In the IR's (channels-last) order, permuted, and back to the ONNX layout.
            let last = rank == 1 ? x : add("Transpose", [x], name: node.name, ["perm": .ints(Self.toChannelsLast(rank: rank))])
            out = add("Transpose", [last], name: node.name, ["perm": .ints([0] + perm.map { Int64($0 + 1) })])
            if outShape.count > 1 { out = add("Transpose", [out], name: node.name, ["perm": .ints(Self.toChannelsFirst(rank: outShape.count))]) }
        case .cropping2d(let c):
            let shape = inShapes[0]
            let (starts, ends, axes): ([Int64], [Int64], [Int64]) = rank == 3
                ? ([Int64(c[0]), Int64(c[2])], [Int64(shape[0] - c[1]), Int64(shape[1] - c[3])], [2, 3])
                : ([Int64(c[2])], [Int64(shape[0] - c[3])], [2])
            out = add("Slice", [x, constantInt64(node.name + "/starts", starts), constantInt64(node.name + "/ends", ends),
                                constantInt64(node.name + "/axes", axes)], name: node.name)
        case .upsampling(let u):
            let scales: [Float] = rank == 3 ? [1, 1, Float(u.factors[0]), Float(u.factors[1])] : [1, 1, Float(u.factors[1])]
            let attributes: [String: Attribute] = u.interpolation == .nearest
                ? ["mode": .string("nearest"), "coordinate_transformation_mode": .string("asymmetric"), "nearest_mode": .string("floor")]
                : ["mode": .string("linear"), "coordinate_transformation_mode": .string("half_pixel")]
            out = add("Resize", [x, "", constant(node.name + "/scales", shape: [scales.count], values: scales)], name: node.name, attributes)
        case .add:
            out = add("Sum", inputs, name: node.name)
        case .multiply:
            out = inputs[0]
            for other in inputs.dropFirst() { out = add("Mul", [out, other], name: node.name) }
        case .merge(let kind):
            switch kind {
            case .subtract: out = add("Sub", inputs, name: node.name)
            case .maximum: out = add("Max", inputs, name: node.name)
            case .minimum: out = add("Min", inputs, name: node.name)
            case .average: out = add("Mean", inputs, name: node.name)
            }
        case .concatenate(let axis):
            out = add("Concat", inputs, name: node.name, ["axis": .int(Self.axis(axis, rank: rank))])
        case .slice(let axis, let start, let end):
            out = add("Slice", [x, constantInt64(node.name + "/starts", [Int64(start)]), constantInt64(node.name + "/ends", [Int64(end)]),
                                constantInt64(node.name + "/axes", [Self.axis(axis, rank: rank)])], name: node.name)
        case .flatten:
            let last = rank == 1 ? x : add("Transpose", [x], name: node.name, ["perm": .ints(Self.toChannelsLast(rank: rank))])
            out = add("Flatten", [last], name: node.name, ["axis": .int(1)])
        case .reshape(let target):
            let last = rank == 1 ? x : add("Transpose", [x], name: node.name, ["perm": .ints(Self.toChannelsLast(rank: rank))])
            out = add("Reshape", [last, constantInt64(node.name + "/shape", [0] + target.map(Int64.init))], name: node.name)
            if outShape.count > 1 { out = add("Transpose", [out], name: node.name, ["perm": .ints(Self.toChannelsFirst(rank: outShape.count))]) }
        case .identity:
            out = add("Identity", [x], name: node.name)
        case .layerNorm(let ln):
            guard ln.axes == Array((rank - ln.axes.count)..<rank) else {
                throw fail(node, "a layer normalization over the non-trailing axes \(ln.axes) (ONNX normalizes trailing axes)")
            }
            let shape = ln.axes.map { inShapes[0][$0] }, count = shape.reduce(1, *)
            let last = rank == 1 ? x : add("Transpose", [x], name: node.name, ["perm": .ints(Self.toChannelsLast(rank: rank))])
            out = add("LayerNormalization", [
                last,
                constant(node.name + "/gamma", shape: shape, values: ln.gamma?.values ?? [Float](repeating: 1, count: count)),
                constant(node.name + "/beta", shape: shape, values: ln.beta?.values ?? [Float](repeating: 0, count: count)),
            ], name: node.name, ["axis": .int(Int64(ln.axes[0] + 1)), "epsilon": .float(Float(ln.epsilon))])
            if rank > 1 { out = add("Transpose", [out], name: node.name, ["perm": .ints(Self.toChannelsFirst(rank: rank))]) }
        }
        value[node.name] = out
    }

    /// A depthwise convolution as a grouped Conv: Keras (…, c, m) → ONNX (c·m, 1, …).
    private mutating func depthwise(_ x: String, _ kernel: Tensor, bias: Tensor?, window: Window, input: [Int], name: String) -> String {
        let shape = kernel.shape, rank = shape.count
        let spatial = Array(shape[0..<(rank - 2)]), c = shape[rank - 2], m = shape[rank - 1]
        let taps = spatial.reduce(1, *)
        let values = kernel.values
        var w = [Float](repeating: 0, count: values.count)
        for t in 0..<taps { for ch in 0..<c { for j in 0..<m { w[(ch * m + j) * taps + t] = values[(t * c + ch) * m + j] } } }
        var attributes = windowAttributes(window, input: input)
        attributes["group"] = .int(Int64(c))
        return add("Conv", [x, constant(name + "/kernel", shape: [c * m, 1] + spatial, values: w)]
                   + (bias.map { [constant(name + "/bias", shape: [c * m], values: $0.values)] } ?? []), name: name, attributes)
    }

    /// Applies an activation (channels on axis 1); `linear` returns `x` itself.
    mutating func activate(_ x: String, _ activation: Activation, node: Node, rank: Int) throws -> String {
        let name = node.name
        switch activation {
        case .linear: return x
        case .relu: return add("Relu", [x], name: name)
        case .relu6:
            return add("Clip", [x, constant(name + "/min", shape: [], values: [0]), constant(name + "/max", shape: [], values: [6])], name: name)
        case .sigmoid: return add("Sigmoid", [x], name: name)
        case .tanh: return add("Tanh", [x], name: name)
        case .softmax:
            // Over the channels: the last IR axis, ONNX axis 1.
            return add("Softmax", [x], name: name, ["axis": .int(1)])
        case .selu: return add("Selu", [x], name: name, ["alpha": .float(1.6732632423543772), "gamma": .float(1.0507009873554805)])
        case .swish: return add("Mul", [x, add("Sigmoid", [x], name: name)], name: name)
        case .softplus: return add("Softplus", [x], name: name)
        case .softsign: return add("Softsign", [x], name: name)
        case .exponential: return add("Exp", [x], name: name)
        case .gelu(approximate: false):
            // 0.5 · x · (1 + erf(x / √2))
            let scaled = add("Mul", [x, constant(name + "/inv_sqrt2", shape: [], values: [0.70710678118654752])], name: name)
            let shifted = add("Add", [add("Erf", [scaled], name: name), constant(name + "/one", shape: [], values: [1])], name: name)
            return add("Mul", [add("Mul", [x, constant(name + "/half", shape: [], values: [0.5])], name: name), shifted], name: name)
        case .gelu(approximate: true):
            // 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
            let cube = add("Mul", [add("Mul", [x, x], name: name), x], name: name)
            let inner = add("Add", [x, add("Mul", [cube, constant(name + "/c", shape: [], values: [0.044715])], name: name)], name: name)
            let t = add("Tanh", [add("Mul", [inner, constant(name + "/k", shape: [], values: [0.7978845608028654])], name: name)], name: name)
            let shifted = add("Add", [t, constant(name + "/one", shape: [], values: [1])], name: name)
            return add("Mul", [add("Mul", [x, constant(name + "/half", shape: [], values: [0.5])], name: name), shifted], name: name)
        case .hardSigmoid(let slope): return add("HardSigmoid", [x], name: name, ["alpha": .float(slope), "beta": .float(0.5)])
        case .hardSwish: return add("HardSwish", [x], name: name)
        case .erf: return add("Erf", [x], name: name)
        case .elu(let alpha): return add("Elu", [x], name: name, ["alpha": .float(alpha)])
        case .leakyRelu(let alpha): return add("LeakyRelu", [x], name: name, ["alpha": .float(alpha)])
        case let .clippedRelu(maxValue, slope, threshold):
            guard slope == 0, threshold == 0 else {
                throw ONNXWriteError.unsupported(node: node.name, detail: "a ReLU with negative_slope \(slope) and threshold \(threshold)")
            }
            guard let maxValue else { return add("Relu", [x], name: name) }
            return add("Clip", [x, constant(name + "/min", shape: [], values: [0]), constant(name + "/max", shape: [], values: [maxValue])], name: name)
        }
    }
}
