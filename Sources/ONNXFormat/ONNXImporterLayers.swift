import Foundation
import ModelIR
import ONNXProto

extension Importer {
    // MARK: - Constant folding (shape arithmetic)

    func fold(_ node: Onnx_NodeProto, _ inputs: [ConstantArray]) throws -> ConstantArray {
        func elementwise(_ f: (Int64, Int64) -> Int64?, _ g: (Float, Float) -> Float) throws -> ConstantArray {
            guard inputs.count == 2 else { throw unsupported(node, "\(inputs.count) constant inputs") }
            let (a, b) = (inputs[0], inputs[1])
            let count = max(a.count, b.count)
            guard a.count == b.count || a.count == 1 || b.count == 1 else { throw unsupported(node, "constants of shapes \(a.shape) and \(b.shape)") }
            let shape = a.count >= b.count ? a.shape : b.shape
            if let x = a.ints, let y = b.ints {
                let values = try (0..<count).map { i -> Int64 in
                    let (p, q) = (x[a.count == 1 ? 0 : i], y[b.count == 1 ? 0 : i])
                    if p == Importer.batch || q == Importer.batch {
                        guard node.opType == "Mul", (p == Importer.batch ? q : p) == 1 else { throw unsupported(node, "arithmetic on the batch size") }
                        return Importer.batch
                    }
                    guard let r = f(p, q) else { throw unsupported(node, "integer arithmetic \(p) and \(q)") }
                    return r
                }
                return ConstantArray(shape: shape, ints: values)
            }
            let (x, y) = (a.asFloats, b.asFloats)
            return ConstantArray(shape: shape, floats: (0..<count).map { g(x[a.count == 1 ? 0 : $0], y[b.count == 1 ? 0 : $0]) })
        }
        switch node.opType {
        case "Identity", "Dropout": return inputs[0]
        case "Cast":
            let to = Int(node.int("to") ?? 1)
            return to == Onnx_TensorProto.DataType.float.rawValue || to == Onnx_TensorProto.DataType.double.rawValue
                ? ConstantArray(shape: inputs[0].shape, floats: inputs[0].asFloats) : ConstantArray(shape: inputs[0].shape, ints: inputs[0].asInts)
        case "Add": return try elementwise({ $0.addingReportingOverflow($1).overflow ? nil : $0 + $1 }, +)
        case "Sub": return try elementwise({ $0.subtractingReportingOverflow($1).overflow ? nil : $0 - $1 }, -)
        case "Mul": return try elementwise({ $0.multipliedReportingOverflow(by: $1).overflow ? nil : $0 * $1 }, *)
        case "Div": return try elementwise({ $1 == 0 ? nil : $0 / $1 }, /)
        case "Gather":
            let (data, indices) = (inputs[0], inputs[1])
            guard (node.int("axis") ?? 0) == 0, data.shape.count == 1 else { throw unsupported(node, "a gather from a constant of shape \(data.shape) on axis \(node.int("axis") ?? 0)") }
            let picked = try indices.asInts.map { index -> Int in
                let i = Int(index < 0 ? index + Int64(data.count) : index)
                guard i >= 0, i < data.count else { throw unsupported(node, "index \(index) of \(data.count)") }
                return i
            }
            if let ints = data.ints { return ConstantArray(shape: indices.shape, ints: picked.map { ints[$0] }) }
            return ConstantArray(shape: indices.shape, floats: picked.map { data.asFloats[$0] })
        case "Unsqueeze", "Squeeze", "Reshape", "Flatten":
            // The values keep their order; only the shape changes.
            var result = inputs[0]
            result.shape = [result.count]
            return result
        case "Concat":
            guard inputs.allSatisfy({ $0.shape.count <= 1 }) else { throw unsupported(node, "joining constants that are not vectors") }
            if inputs.allSatisfy({ $0.ints != nil }) {
                let all = inputs.flatMap { $0.ints! }
                return ConstantArray(shape: [all.count], ints: all)
            }
            let all = inputs.flatMap(\.asFloats)
            return ConstantArray(shape: [all.count], floats: all)
        case "Shape":
            return ConstantArray(shape: [inputs[0].shape.count], ints: inputs[0].shape.map(Int64.init))
        case "Slice":
            // A vector's run (a shape's trailing dimensions: the segmentation heads' resize target).
            let data = inputs[0]
            guard data.shape.count <= 1, inputs.count >= 3, inputs[1].count == 1, inputs[2].count == 1, inputs[1].ints != nil, inputs[2].ints != nil,
                  inputs.dropFirst(3).allSatisfy({ $0.ints != nil }),
                  inputs.count < 4 || inputs[3].asInts.allSatisfy({ $0 == 0 || $0 == -1 }),
                  inputs.count < 5 || inputs[4].asInts == [1] else { throw unsupported(node, "a slice of a constant other than a vector's run") }
            let size = Int64(data.count)
            func clamp(_ v: Int64) -> Int { Int(max(0, min(size, v < 0 ? v + size : v))) }
            let (b, e) = (clamp(inputs[1].asInts[0]), clamp(inputs[2].asInts[0]))
            let range = b..<max(b, e)
            if let ints = data.ints { return ConstantArray(shape: [range.count], ints: Array(ints[range])) }
            return ConstantArray(shape: [range.count], floats: Array(data.asFloats[range]))
        case "Transpose":
            // Weights transposed in the graph (PyTorch's Linear without constant folding).
            let input = inputs[0], shape = input.shape, rank = shape.count
            let perm = (node.ints("perm") ?? (0..<Int64(rank)).reversed().map { $0 }).map { Int($0) }
            guard perm.sorted() == Array(0..<rank) else { throw unsupported(node, "perm \(perm)") }
            return input.transposed(perm)
        default:
            throw unsupported(node, "computing on constants only")
        }
    }

    // MARK: - Convolutions

    mutating func convolution(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard let w = try constantInput(node, 1), w.shape.count == shape.count + 1, shape.count == 2 || shape.count == 3 else {
            throw unsupported(node, "a convolution whose weights are not a constant of rank \(shape.count + 1), or an input of rank \(shape.count + 1)")
        }
        let bias = try constantInput(node, 2)
        let group = Int(node.int("group") ?? 1)
        let (cout, cinPerGroup) = (w.shape[0], w.shape[1]), cin = shape[0]
        let kernelShape = Array(w.shape.dropFirst(2))
        guard group >= 1, cin == cinPerGroup * group, cout % group == 0, bias.map({ $0.count == cout }) ?? true else {
            throw unsupported(node, "weights \(w.shape) with group \(group) on \(cin) channels")
        }
        let (window, pads, _) = try self.window(node, spatial: Array(shape.dropFirst()), kernel: kernelShape)
        var input = x
        if let pads { input = try emit(baseName(node) + "/pad", .zeroPadding2d(pads), [x], for: node) }
        let taps = kernelShape.reduce(1, *), values = w.asFloats
        // ONNX (out, in/g, …) → Keras (…, in/g, out).
        var kernel = [Float](repeating: 0, count: values.count)
        for o in 0..<cout { for i in 0..<cinPerGroup { for t in 0..<taps { kernel[(t * cinPerGroup + i) * cout + o] = values[(o * cinPerGroup + i) * taps + t] } } }
        let op: Op
        do {
            let conv = try Conv2D(kernel: Tensor(shape: kernelShape + [cinPerGroup, cout], values: kernel), bias: bias.map { Tensor($0.asFloats) },
                                  strides: window.strides, dilation: window.dilation, padding: window.padding, groups: group)
            op = .conv2d(conv)
        } catch { throw unsupported(node, "\(error)") }
        let out = try emit(baseName(node), op, [input], for: node)
        let irOut = shapes[out]!
        try setTensor(node, out, shape: [irOut.last!] + irOut.dropLast())
    }

    mutating func transposedConvolution(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard shape.count == 3, let w = try constantInput(node, 1), w.shape.count == 4, w.shape[0] == shape[0] else {
            throw unsupported(node, "a transposed convolution other than 2-D with constant weights")
        }
        guard (node.int("group") ?? 1) == 1, (node.ints("dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }) else {
            throw unsupported(node, "groups or dilations")
        }
        let (cin, cout, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let strides = (node.ints("strides") ?? [1, 1]).map { Int($0) }
        let bias = try constantInput(node, 2)
        let values = w.asFloats
        var kernel = [Float](repeating: 0, count: values.count)
        for i in 0..<cin { for o in 0..<cout { for t in 0..<(kh * kw) { kernel[(t * cout + o) * cin + i] = values[(i * cout + o) * kh * kw + t] } } }
        // The output ONNX computes, matched against Keras's valid and same forms.
        let pads = (node.ints("pads") ?? [0, 0, 0, 0]).map { Int($0) }, extra = (node.ints("output_padding") ?? [0, 0]).map { Int($0) }
        guard strides.count == 2, pads.count == 4, extra.count == 2, node.ints("output_shape") == nil,
              (node.string("auto_pad") ?? "NOTSET") == "NOTSET" else { throw unsupported(node, "auto_pad or output_shape") }
        let sizes = [kh, kw]
        var length = [0, 0]
        for a in 0..<2 {
            let full: Int = strides[a] * (shape[a + 1] - 1) + extra[a] + sizes[a]
            length[a] = full - pads[a] - pads[a + 2]
        }
        for padding in [Padding.valid, .same] {
            guard let conv = try? Conv2DTranspose(kernel: Tensor(shape: [kh, kw, cout, cin], values: kernel), bias: bias.map { Tensor($0.asFloats) },
                                                  strides: strides, padding: padding) else { continue }
            let fits = (0..<2).allSatisfy { a in
                let (n, before) = conv.output(axis: a, input: shape[a + 1])
                return n == length[a] && before == pads[a]
            }
            if fits {
                let out = try emit(baseName(node), .conv2dTranspose(conv), [x], for: node)
                return try setTensor(node, out, shape: [cout, length[0], length[1]])
            }
        }
        // Any other pads (PyTorch's ConvTranspose2d(k 3, s 2, padding 1, output_padding 1), k 4 with
        // padding 1, ...): Keras's valid form computes every position a tap reaches, then a crop keeps
        // ONNX's window of it. Positions past the valid output get no tap, only the bias: not
        // representable by a crop, so output_padding may not reach past what pads remove after.
        let valid = try Conv2DTranspose(kernel: Tensor(shape: [kh, kw, cout, cin], values: kernel), bias: bias.map { Tensor($0.asFloats) },
                                        strides: strides, padding: .valid)
        var crops: [Int] = []
        for a in 0..<2 {
            let full = valid.output(axis: a, input: shape[a + 1]).length
            crops += [pads[a], full - pads[a] - length[a]]
        }
        guard length.allSatisfy({ $0 > 0 }), crops.allSatisfy({ $0 >= 0 }) else {
            throw unsupported(node, "pads \(pads) with output_padding \(extra): the output reaches past the positions a tap writes")
        }
        let full = try emit(baseName(node) + "/full", .conv2dTranspose(valid), [x], for: node)
        let out = try emit(baseName(node), .cropping2d(crops), [full], for: node)
        return try setTensor(node, out, shape: [cout, length[0], length[1]])
    }

    // MARK: - Dense

    mutating func dense(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard shape.count == 1, let b = try constantInput(node, 1), b.shape.count == 2 else {
            throw unsupported(node, "a product other than (N, K) by a constant (K, M)")
        }
        let transB = node.opType == "Gemm" && (node.int("transB") ?? 0) != 0
        guard node.opType == "MatMul" || (node.int("transA") ?? 0) == 0 else { throw unsupported(node, "transA=1") }
        let alpha = node.opType == "Gemm" ? node.float("alpha") ?? 1 : 1, beta = node.opType == "Gemm" ? node.float("beta") ?? 1 : 1
        let (k, m) = transB ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
        guard k == shape[0] else { throw unsupported(node, "weights \(b.shape) for \(shape[0]) inputs") }
        let values = b.asFloats
        var kernel = [Float](repeating: 0, count: values.count)
        for i in 0..<k { for o in 0..<m { kernel[i * m + o] = (transB ? values[o * k + i] : values[i * m + o]) * alpha } }
        var bias: [Float]?
        if node.opType == "Gemm", let c = try constantInput(node, 2) {
            guard c.count == m || c.count == 1 else { throw unsupported(node, "a bias of shape \(c.shape)") }
            let cv = c.asFloats
            bias = (0..<m).map { cv[c.count == 1 ? 0 : $0] * beta }
        }
        let op = Op.dense(try Dense(kernel: Tensor(shape: [k, m], values: kernel), bias: bias.map(Tensor.init), activation: .linear))
        try setTensor(node, try emit(baseName(node), op, [x], for: node), shape: [m])
    }

    // MARK: - Element-wise

    /// The per-channel values of a constant broadcast (NumPy's rules) against a tensor of
    /// per-sample shape `shape` along its axis `channelAxis`: a scalar, or ones but there. nil
    /// for anything else.
    func perChannel(_ c: ConstantArray, shape: [Int], channelAxis: Int = 0) -> [Float]? {
        var dims = c.shape
        while dims.count > shape.count, dims.first == 1 { dims.removeFirst() }
        let values = c.asFloats
        if values.count == 1 { return [Float](repeating: values[0], count: shape[channelAxis]) }
        while dims.count < shape.count { dims.insert(1, at: 0) }
        guard dims.count == shape.count, dims[channelAxis] == shape[channelAxis],
              dims.indices.allSatisfy({ $0 == channelAxis || dims[$0] == 1 }) else { return nil }
        return values
    }

    /// Add, Sub, Mul, Div, Max, Min, Sum, Mean. With `channelAxis` (a value in another axis order,
    /// whose last IR axis is that ONNX axis), false instead of an error for a constant that is not
    /// per channel.
    @discardableResult
    mutating func elementwise(_ node: Onnx_NodeProto, channelAxis: Int? = nil) throws -> Bool {
        let base = baseName(node)
        let inputs = try node.input.map { try value($0, of: node) }
        let tensors = inputs.compactMap { if case let .tensor(n, s) = $0 { (n, s) } else { nil } }
        if tensors.count == inputs.count {
            let rank = tensors[0].1.count
            guard tensors.allSatisfy({ $0.1.count == rank }) else { throw unsupported(node, "tensors of different ranks \(tensors.map(\.1))") }
            var shape = tensors[0].1
            for t in tensors { for d in 0..<rank where t.1[d] != 1 { shape[d] = t.1[d] } }
            let op: Op
            switch node.opType {
            case "Add", "Sum": op = .add
            case "Mul": op = .multiply
            case "Sub": op = .merge(.subtract)
            case "Max": op = .merge(.maximum)
            case "Min": op = .merge(.minimum)
            case "Mean": op = .merge(.average)
            default: throw unsupported(node, "dividing by a computed tensor")
            }
            if tensors.count == 1 {
                try setTensor(node, tensors[0].0, shape: tensors[0].1)
            } else {
                try setTensor(node, try emit(base, op, tensors.map(\.0), for: node), shape: shape)
            }
            return true
        }
        // One tensor and one constant: a per-channel scale and shift.
        guard inputs.count == 2, tensors.count == 1 else { throw unsupported(node, "\(inputs.count) inputs with \(tensors.count) computed") }
        let tensorFirst: Bool = { if case .tensor = inputs[0] { true } else { false } }()
        let (x, shape) = tensors[0]
        guard case let .constant(c) = inputs[tensorFirst ? 1 : 0], let v = perChannel(c, shape: shape, channelAxis: channelAxis ?? 0) else {
            if channelAxis != nil { return false }
            throw unsupported(node, "a constant operand that is neither a scalar nor one value per channel")
        }
        let ones = [Float](repeating: 1, count: v.count), zeros = [Float](repeating: 0, count: v.count)
        let (scale, shift): ([Float], [Float])
        switch node.opType {
        case "Add", "Sum": (scale, shift) = (ones, v)
        case "Mul": (scale, shift) = (v, zeros)
        case "Sub": (scale, shift) = tensorFirst ? (ones, v.map { -$0 }) : (ones.map { -$0 }, v)
        case "Div":
            guard tensorFirst, v.allSatisfy({ $0 != 0 }) else { throw unsupported(node, "dividing a constant by a tensor, or by zero") }
            (scale, shift) = (v.map { 1 / $0 }, zeros)
        default: throw unsupported(node, "\(node.opType) with a constant")
        }
        // A bias added to a MatMul's product (PyTorch's Linear): the Dense's own bias, when the
        // product has no other reader.
        let source = node.input[tensorFirst ? 0 : 1]
        if node.opType == "Add" || node.opType == "Sum", let last = nodes.indices.last, nodes[last].name == x,
           case .dense(var dense) = nodes[last].operation, dense.bias == nil, dense.activation == .linear,
           readers[source] == 1, !graphOutputs.contains(source), shift.count == dense.units {
            dense.bias = Tensor(shift)
            nodes[last].operation = .dense(dense)
            try setTensor(node, x, shape: shape)
            return true
        }
        let op = Op.affine(try Affine(scale: Tensor(scale), shift: Tensor(shift)))
        try setTensor(node, try emit(base, op, [x], for: node), shape: shape)
        return true
    }

    // MARK: - Pooling, reshaping, resizing

    mutating func pooling(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard shape.count == 2 || shape.count == 3, let kernel = node.ints("kernel_shape")?.map({ Int($0) }) else {
            throw unsupported(node, "pooling without kernel_shape or of a rank-\(shape.count + 1) tensor")
        }
        if let d = node.ints("dilations"), d.contains(where: { $0 != 1 }) { throw unsupported(node, "dilations \(d)") }
        let isMax = node.opType == "MaxPool", includePads = !isMax && (node.int("count_include_pad") ?? 0) != 0
        // Pads counted in an average are zeros in the input, read by a valid window.
        let (window, pads, overhang) = try self.window(node, spatial: Array(shape.dropFirst()), kernel: kernel, explicit: includePads)
        if overhang, !isMax {
            // PyTorch and onnxruntime leave the overhang out of the count, pads or not: no IR form.
            throw unsupported(node, "ceil_mode=1 where the last window overhangs the input (average pooling)")
        }
        var input = x
        if let pads {
            if isMax {
                input = try emit(baseName(node) + "/pad", .pad2d(pads: pads, value: -.infinity), [x], for: node)
            } else if includePads {
                input = try emit(baseName(node) + "/pad", .zeroPadding2d(pads), [x], for: node)
            } else {
                throw unsupported(node, "average pooling with explicit pads excluded from the count (other than TensorFlow's same)")
            }
        }
        let pool = try Pool2D(kind: isMax ? .max : .average, size: window.size, strides: window.strides, padding: window.padding)
        let out = try emit(baseName(node), .pool2d(pool), [input], for: node)
        let irOut = shapes[out]!
        try setTensor(node, out, shape: [irOut.last!] + irOut.dropLast())
    }

    /// The IR axis (channels last, batch excluded) of ONNX axis `axis` (batch included) of a tensor
    /// whose per-sample ONNX shape has `rank` axes; nil for the batch axis or out of range.
    static func irAxis(_ axis: Int64, rank: Int) -> Int? {
        let a = Int(axis < 0 ? axis + Int64(rank + 1) : axis)
        guard a >= 1, a <= rank else { return nil }
        return a == 1 ? rank - 1 : a - 2
    }

    mutating func slice(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard opset >= 10, let starts = try constantInput(node, 1)?.asInts, let ends = try constantInput(node, 2)?.asInts else {
            throw unsupported(node, "a slice without constant starts and ends")
        }
        let axes = try constantInput(node, 3)?.asInts ?? (0..<Int64(starts.count)).map { $0 }
        let steps = try constantInput(node, 4)?.asInts ?? [Int64](repeating: 1, count: starts.count)
        guard axes.count == starts.count, ends.count == starts.count, steps.count == starts.count, steps.allSatisfy({ $0 == 1 }) else {
            throw unsupported(node, "a slice with steps other than 1")
        }
        let rank = shape.count
        var crops = [0, 0, 0, 0], cropped = false
        var ranges: [(axis: Int, start: Int, end: Int)] = []
        var outShape = shape
        for (i, raw) in axes.enumerated() {
            let normalized = raw < 0 ? raw + Int64(rank + 1) : raw
            if normalized == 0 {
                // The batch axis: only all of it.
                guard starts[i] == 0, ends[i] >= Int64(Int32.max) else { throw unsupported(node, "a slice of the batch axis") }
                continue
            }
            guard let irAxis = Self.irAxis(raw, rank: rank) else { throw unsupported(node, "a slice of axis \(raw) of a rank-\(rank + 1) tensor") }
            let onnxAxis = Int(normalized) - 1
            let size = Int64(shape[onnxAxis])
            func clamp(_ v: Int64) -> Int64 { max(0, min(size, v < 0 ? v + size : v)) }
            let (b, e) = (clamp(starts[i]), clamp(ends[i]))
            guard e > b else { throw unsupported(node, "an empty slice") }
            if b == 0, e == size { continue }
            outShape[onnxAxis] = Int(e - b)
            if (rank == 3 && onnxAxis >= 1) || (rank == 2 && onnxAxis == 1) {
                // Height and width (or a 1-D input's steps): a cropping.
                let slot = rank == 3 ? (onnxAxis == 1 ? 0 : 2) : 2
                crops[slot] = Int(b)
                crops[slot + 1] = Int(size - e)
                cropped = true
            } else {
                ranges.append((irAxis, Int(b), Int(e)))
            }
        }
        var current = x
        if cropped { current = try emit(baseName(node), .cropping2d(crops), [current], for: node) }
        for (k, range) in ranges.enumerated() {
            let name = baseName(node) + (cropped || k > 0 ? "/slice\(k)" : "")
            current = try emit(name, .slice(axis: range.axis, start: range.start, end: range.end), [current], for: node)
        }
        try setTensor(node, current, shape: outShape)
    }

    /// Split: each output a slice of the input along one axis.
    mutating func split(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        let rank = shape.count, raw = node.int("axis") ?? 0
        guard let irAxis = Self.irAxis(raw, rank: rank) else { throw unsupported(node, "a split of axis \(raw) (the batch, or beyond the rank)") }
        let onnxAxis = Int(raw < 0 ? raw + Int64(rank + 1) : raw) - 1
        let size = shape[onnxAxis], outputs = node.output.count
        guard outputs >= 1, !node.output.contains(where: \.isEmpty) else { throw unsupported(node, "unnamed outputs") }
        let given = try constantInput(node, 1)
        guard given.map({ $0.ints != nil }) ?? true else { throw unsupported(node, "split sizes that are not integers") }
        var sizes = (given?.ints ?? node.ints("split") ?? []).map { Int(clamping: $0) }
        if sizes.isEmpty {
            // Equal parts; with num_outputs (opset 18) the last may be smaller.
            let part = (size + outputs - 1) / outputs
            sizes = (0..<outputs).map { min(part, max(size - $0 * part, 0)) }
        }
        guard sizes.count == outputs, sizes.allSatisfy({ $0 > 0 && $0 <= size }), sizes.reduce(0, +) == size else {
            throw unsupported(node, "split sizes \(sizes) of an axis of \(size) into \(outputs) outputs")
        }
        var start = 0
        for (k, (output, count)) in zip(node.output, sizes).enumerated() {
            var outShape = shape
            outShape[onnxAxis] = count
            let part = count == size ? x : try emit(baseName(node) + "/\(k)", .slice(axis: irAxis, start: start, end: start + count), [x], for: node)
            values[output] = .tensor(node: part, shape: outShape)
            start += count
        }
    }

    /// The per-sample ONNX shape a Reshape / Squeeze / Unsqueeze asks for.
    func reshapeTarget(_ node: Onnx_NodeProto, shape: [Int]) throws -> [Int] {
        let full = [-2] + shape  // -2: the batch
        switch node.opType {
        case "Reshape":
            guard let target = try constantInput(node, 1)?.asInts, !target.isEmpty else { throw unsupported(node, "a shape that is not a constant") }
            if (node.int("allowzero") ?? 0) != 0, target.contains(0) { throw unsupported(node, "allowzero=1 with a zero dimension") }
            let first = target[0]
            guard first == Importer.batch || first == 0 || first == -1 || first == declaredBatch else {
                throw unsupported(node, "a shape \(target) whose first dimension is not the batch")
            }
            var rest = try target.dropFirst().enumerated().map { i, d -> Int in
                if d == 0 { guard i + 1 < full.count else { throw unsupported(node, "a 0 beyond the input's rank") }; return full[i + 1] }
                guard d == -1 || (d > 0 && d < 1 << 31) else { throw unsupported(node, "dimension \(d)") }
                return Int(d)
            }
            let total = shape.reduce(1, *)
            if first == -1 { guard !rest.contains(-1) else { throw unsupported(node, "two unknown dimensions") } }
            if let unknown = rest.firstIndex(of: -1) {
                let known = rest.filter { $0 != -1 }.reduce(1, *)
                guard rest.filter({ $0 == -1 }).count == 1, known > 0, total % known == 0 else { throw unsupported(node, "shape \(target)") }
                rest[unknown] = total / known
            }
            return rest
        default:
            let fromInput = try constantInput(node, 1)?.asInts
            let axes = (node.ints("axes") ?? fromInput ?? []).map { Int($0) }
            if node.opType == "Squeeze" {
                let normalized = Set(axes.map { $0 < 0 ? $0 + full.count : $0 })
                guard !normalized.contains(0), normalized.allSatisfy({ $0 < full.count && full[$0] == 1 }) else {
                    throw unsupported(node, "squeezing axes \(axes) of \(full)")
                }
                let squeezed = axes.isEmpty ? full.enumerated().filter { $0.offset == 0 || $0.element != 1 }.map(\.element)
                                            : full.enumerated().filter { !normalized.contains($0.offset) }.map(\.element)
                return Array(squeezed.dropFirst())
            }
            var result = full
            let rank = full.count + axes.count
            for axis in axes.map({ $0 < 0 ? $0 + rank : $0 }).sorted() {
                guard axis >= 1, axis <= result.count else { throw unsupported(node, "unsqueezing axis \(axis)") }
                result.insert(1, at: axis)
            }
            return Array(result.dropFirst())
        }
    }

    mutating func resize(_ node: Onnx_NodeProto) throws {
        let (x, shape) = try tensorInput(node, 0)
        guard shape.count == 3 || shape.count == 2 else { throw unsupported(node, "resizing a rank-\(shape.count + 1) tensor") }
        if shape.count == 2 {
            // 1-D (N, C, L): repeat each step, nearest only.
            let scales = (try constantInput(node, node.opType == "Upsample" ? 1 : 2))?.asFloats ?? node.attribute("scales")?.floats ?? []
            guard scales.count == 3, scales[0] == 1, scales[1] == 1, scales[2] >= 1, scales[2] == scales[2].rounded(),
                  (node.string("mode") ?? "nearest") == "nearest" else { throw unsupported(node, "1-D scales \(scales)") }
            let out = try emit(baseName(node), .upsampling(try Upsampling(factors: [1, Int(scales[2])], interpolation: .nearest)), [x], for: node)
            return try setTensor(node, out, shape: [shape[0], shape[1] * Int(scales[2])])
        }
        var scales: [Float] = []
        if node.opType == "Upsample" {
            let fromInput = try constantInput(node, 1)?.asFloats
            scales = node.attribute("scales")?.floats ?? fromInput ?? []
        } else {
            scales = (try constantInput(node, 2))?.asFloats ?? []
            if scales.isEmpty, let sizes = try constantInput(node, 3)?.asInts, sizes.count == 4 {
                scales = [1, 1, Float(sizes[2]) / Float(shape[1]), Float(sizes[3]) / Float(shape[2])]
            }
        }
        guard scales.count == 4, scales[0] == 1, scales[1] == 1, scales[2] >= 1, scales[3] >= 1,
              scales[2] == scales[2].rounded(), scales[3] == scales[3].rounded() else {
            throw unsupported(node, "scales \(scales) (integer upsampling of height and width is supported)")
        }
        let mode = node.string("mode") ?? "nearest"
        let transform = node.string("coordinate_transformation_mode") ?? (node.opType == "Upsample" ? "asymmetric" : "half_pixel")
        let interpolation: Upsampling.Interpolation
        switch mode {
        case "nearest":
            guard transform == "asymmetric", (node.string("nearest_mode") ?? "round_prefer_floor") == "floor" || node.opType == "Upsample" else {
                throw unsupported(node, "nearest with \(transform) / \(node.string("nearest_mode") ?? "round_prefer_floor")")
            }
            interpolation = .nearest
        case "linear", "bilinear":
            guard transform == "half_pixel" || transform == "pytorch_half_pixel" else { throw unsupported(node, "linear with \(transform)") }
            interpolation = .bilinear
        default:
            throw unsupported(node, "mode \(mode)")
        }
        let factors = [Int(scales[2]), Int(scales[3])]
        let out = try emit(baseName(node), .upsampling(try Upsampling(factors: factors, interpolation: interpolation)), [x], for: node)
        try setTensor(node, out, shape: [shape[0], shape[1] * factors[0], shape[2] * factors[1]])
    }
}
