import ModelIR
import ONNXProto

/// Transposes without copies. A rank-r runtime value is normally held channels-last (ONNX axes
/// 1, …, r−1, 0: `Importer.standardAxes`). A Transpose only renames axes: its output is the same
/// IR node, `arranged` under another axis order (IR axis i holds ONNX axis `axes[i]`). The
/// operators below work on any order: element-wise steps, a MatMul over the last ONNX axis (a
/// Dense over the IR's last axis once that axis is last), LayerNormalization. Any other reader
/// first gets the value in the standard order (one transpose, made once). PyTorch's
/// channels-last blocks (ConvNeXt: permute, LayerNorm, Linear, GELU, Linear, permute back) then
/// run without a transpose.
extension Importer {
    static func standardAxes(rank: Int) -> [Int] { rank <= 1 ? Array(0..<rank) : Array(1..<rank) + [0] }

    /// The IR axis order of a value: IR axis i holds ONNX sample axis `axes(of:)[i]`.
    func axes(of name: String, rank: Int) -> [Int] { arranged[name] ?? Self.standardAxes(rank: rank) }

    /// Records the value `name` as held by `irNode` in the axis order `axes`.
    mutating func setArranged(_ name: String, _ irNode: String, shape: [Int], axes: [Int]) {
        values[name] = .tensor(node: irNode, shape: shape)
        arranged[name] = axes == Self.standardAxes(rank: shape.count) ? nil : axes
    }

    /// `name` in the standard order from here on (a transpose of its node, if it was arranged).
    mutating func standardize(_ name: String, base: String) throws {
        guard let axes = arranged[name], case let .tensor(node, shape)? = values[name] else { return }
        let standard = Self.standardAxes(rank: shape.count)
        let moved = try permute(node, standard.map { axes.firstIndex(of: $0)! }, base: base + "/to_nhwc")
        setArranged(name, moved, shape: shape, axes: standard)
    }

    /// Imports `node` on values in any axis order, when it is one of the operators that can;
    /// false when the caller must import it on standard-order inputs.
    mutating func importArranged(_ node: Onnx_NodeProto) throws -> Bool {
        guard let output = node.output.first, !output.isEmpty else { return false }
        let base = baseName(node)
        let anyArranged = node.input.contains { arranged[$0] != nil }
        switch node.opType {
        case "Transpose":
            let (x, shape) = try tensorInput(node, 0)
            let perm = (node.ints("perm") ?? Array((0...Int64(shape.count)).reversed())).map { Int($0) }
            guard perm.count == shape.count + 1, perm.first == 0, perm.sorted() == Array(0...shape.count) else {
                throw unsupported(node, "perm \(perm) (the batch axis must stay first)")
            }
            // Output axis j is input axis sample[j]; input axis a becomes output axis inverse[a].
            let sample = perm.dropFirst().map { $0 - 1 }
            var inverse = [Int](repeating: 0, count: sample.count)
            for (j, a) in sample.enumerated() { inverse[a] = j }
            let axes = axes(of: node.input[0], rank: shape.count)
            setArranged(output, x, shape: sample.map { shape[$0] }, axes: axes.map { inverse[$0] })
            return true
        case "MatMul":
            let (x, shape) = try tensorInput(node, 0)
            guard shape.count >= 2 else { return false }
            guard let b = try constantInput(node, 1), b.shape.count == 2, b.shape[0] == shape[shape.count - 1] else {
                throw unsupported(node, "a product other than (…, K) by a constant (K, M)")
            }
            // A Dense over the last ONNX axis, which must be the IR's last.
            let last = shape.count - 1
            var axes = axes(of: node.input[0], rank: shape.count)
            var input = x
            if axes.last != last {
                let target = axes.filter { $0 != last } + [last]
                input = try permute(x, target.map { axes.firstIndex(of: $0)! }, base: base + "/channels_last")
                axes = target
            }
            let (k, m) = (b.shape[0], b.shape[1])
            let dense = try Dense(kernel: Tensor(shape: [k, m], values: b.asFloats), bias: nil, activation: .linear)
            var outShape = shape
            outShape[last] = m
            setArranged(output, try emit(base, .dense(dense), [input], for: node), shape: outShape, axes: axes)
            return true
        case "LayerNormalization":
            try layerNormalization(node)
            return true
        case "Identity", "Dropout":
            guard anyArranged else { return false }
            let (x, shape) = try tensorInput(node, 0)
            setArranged(output, x, shape: shape, axes: axes(of: node.input[0], rank: shape.count))
            return true
        case "Relu", "Erf", "Sigmoid", "Tanh", "HardSwish", "Softplus", "Softsign", "Exp", "Selu", "Elu", "LeakyRelu", "HardSigmoid", "Clip":
            guard anyArranged else { return false }
            let (x, shape) = try tensorInput(node, 0)
            let out = try emit(base, .activation(try activation(node, shape: shape)), [x], for: node)
            setArranged(output, out, shape: shape, axes: axes(of: node.input[0], rank: shape.count))
            return true
        case "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean":
            guard anyArranged else { return false }
            // Tensors of one shape in one order, or one tensor and a constant along its last IR axis.
            let inputs = try node.input.map { try value($0, of: node) }
            let tensorNames = zip(node.input, inputs).compactMap { if case .tensor = $1 { $0 } else { nil } }
            guard let first = tensorNames.first, case let .tensor(_, shape)? = values[first] else { return false }
            let axes = axes(of: first, rank: shape.count)
            guard tensorNames.allSatisfy({ name in
                if case let .tensor(_, s)? = values[name] { s == shape && self.axes(of: name, rank: s.count) == axes } else { false }
            }) else { return false }
            guard try elementwise(node, channelAxis: axes.last ?? 0) else { return false }
            if case let .tensor(out, outShape)? = values[output] { setArranged(output, out, shape: outShape, axes: axes) }
            return true
        default:
            return false
        }
    }

    /// LayerNormalization over ONNX axes `axis…` of a value in any order: the IR axes that hold
    /// them, with the scale and bias reordered to match.
    mutating func layerNormalization(_ node: Onnx_NodeProto) throws {
        guard let output = node.output.first, !output.isEmpty else { throw unsupported(node, "a node without an output") }
        let (x, shape) = try tensorInput(node, 0)
        var axis = Int(node.int("axis") ?? -1)
        let r = shape.count + 1
        if axis < 0 { axis += r }
        guard axis >= 1, axis < r else { throw unsupported(node, "normalizing from axis \(axis) (the batch)") }
        let first = axis - 1  // the first normalized sample axis, ONNX order
        let axes = axes(of: node.input[0], rank: shape.count)
        let irAxes = axes.indices.filter { axes[$0] >= first }
        let onnxParameterShape = Array(shape[first...])
        let count = onnxParameterShape.reduce(1, *)
        func parameter(_ c: ConstantArray?) throws -> Tensor? {
            guard let c else { return nil }
            guard c.count == count else { throw unsupported(node, "a scale or bias of shape \(c.shape)") }
            // ONNX order → the IR's: output axis j is ONNX parameter axis axes[irAxes[j]] − first.
            let ordered = ConstantArray(shape: onnxParameterShape, floats: c.asFloats).transposed(irAxes.map { axes[$0] - first })
            return try Tensor(shape: ordered.shape, values: ordered.asFloats)
        }
        let ln = try LayerNorm(axes: irAxes, epsilon: Double(node.float("epsilon") ?? 1e-5), gamma: try parameter(try constantInput(node, 1)),
                               beta: try parameter(try constantInput(node, 2)))
        setArranged(output, try emit(baseName(node), .layerNorm(ln), [x], for: node), shape: shape, axes: axes)
    }
}
