import ModelIR

/// Rewrites of a graph into an equivalent one that plans into fewer steps, run before the
/// executor plans it. Each keeps every node name that can be asked for (the outputs and the
/// observed nodes) and the values up to float32 rounding.
enum GraphRewrites {
    /// `graph` with the nodes in `replaced` put in place of those of the same names and the nodes in
    /// `removed` left out (the graph itself when nothing is replaced).
    private static func rebuilt(_ graph: Graph, replacing replaced: [String: Node], removing removed: Set<String>) throws -> Graph {
        guard !replaced.isEmpty else { return graph }
        let nodes = graph.nodes.compactMap { node in removed.contains(node.name) ? nil : replaced[node.name] ?? node }
        return try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs)
    }

    /// An identity (Keras's Dropout, SpatialDropout and GaussianNoise at inference, ONNX's
    /// Identity) that is neither an output nor in `keeping` is left out, its readers reading its
    /// input: no copy of the map, and what computes the input meets its readers (EfficientNet's
    /// projection, its batch norm folded, then Dropout and the residual Add: the Add is fused into
    /// the projection's GEMM). Nothing is computed: the values are the same bit for bit.
    static func bypassingIdentities(_ graph: Graph, keeping: Set<String>) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        var source: [String: String] = [:]
        for node in graph.nodes {
            guard case .identity = node.operation, node.inputs.count == 1, !kept.contains(node.name) else { continue }
            source[node.name] = source[node.inputs[0]] ?? node.inputs[0]
        }
        guard !source.isEmpty else { return graph }
        let nodes = graph.nodes.compactMap { node in
            source[node.name] != nil ? nil : Node(name: node.name, operation: node.operation, inputs: node.inputs.map { source[$0] ?? $0 })
        }
        return try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs)
    }

    /// The node `name` when it is a per-channel affine map of one input with every scale within
    /// `tolerance` of `scale` and every shift `shift`; nil otherwise.
    private static func uniformAffine(_ name: String, in graph: Graph, scale: Float, shift: Float, tolerance: Float = 0) -> Node? {
        guard let node = graph.node(named: name), case .affine(let affine) = node.operation, node.inputs.count == 1,
              affine.scale.values.allSatisfy({ abs($0 - scale) <= tolerance }), affine.shift.values.allSatisfy({ $0 == shift })
        else { return nil }
        return node
    }

    /// A transposed convolution of stride 1 (XceptionUNet's decoder: Keras's Conv2DTranspose 3×3,
    /// `same`) is a plain convolution of its input by the kernel turned 180° with input and output
    /// channels swapped, over the input padded by `k − 1 − p` before and whatever the output's length
    /// needs after (`p` the transposed conv's own padding before). Written as a zero padding and a
    /// `valid` Conv2D under the transposed conv's name, it plans as any conv does: the padding folded
    /// into the conv's reads, the prepacked GEMM or Winograd, its epilogue fused, shared by threads.
    /// The products are the same; only the order of the sums differs: float32 rounding.
    static func transposedConvsAsConvs(_ graph: Graph) throws -> Graph {
        var names = Set(graph.nodes.map(\.name))
        var nodes: [Node] = []
        var changed = false
        for node in graph.nodes {
            guard case .conv2dTranspose(let conv) = node.operation, conv.strides == [1, 1], node.inputs.count == 1 else {
                nodes.append(node)
                continue
            }
            let (kh, kw, outs, ins) = (conv.size[0], conv.size[1], conv.outputChannels, conv.inputChannels)
            let source = conv.kernel.values
            var flipped = [Float](repeating: 0, count: source.count)
            for ky in 0..<kh {
                for kx in 0..<kw {
                    let from = ((kh - 1 - ky) * kw + (kw - 1 - kx)) * outs * ins, to = (ky * kw + kx) * ins * outs
                    for o in 0..<outs { for i in 0..<ins { flipped[to + i * outs + o] = source[from + o * ins + i] } }
                }
            }
            // Per axis: same keeps the length (pads k − 1 − p and p), valid adds k − 1 (pads k − 1 twice).
            var pads: [Int] = []
            for axis in 0..<2 {
                let k = conv.size[axis], before = conv.output(axis: axis, input: 1).padBefore
                pads += conv.padding == .same ? [k - 1 - before, before] : [k - 1, k - 1]
            }
            var input = node.inputs[0]
            if pads.contains(where: { $0 > 0 }) {
                var name = "\(node.name)/padding", n = 2
                while names.contains(name) { name = "\(node.name)/padding_\(n)"; n += 1 }
                names.insert(name)
                nodes.append(Node(name: name, operation: .zeroPadding2d(pads), inputs: [input]))
                input = name
            }
            let plain = try Conv2D(kernel: Tensor(shape: [kh, kw, ins, outs], values: flipped), bias: conv.bias, padding: .valid,
                                   activation: conv.activation)
            nodes.append(Node(name: node.name, operation: .conv2d(plain), inputs: [input]))
            changed = true
        }
        return changed ? try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs) : graph
    }

    /// tf.keras's MobileNetV3 writes hard-swish as four layers: `x + 3` and `· (1/6)` (two
    /// TFOpLambdas, read as per-channel affine maps), a ReLU(6) between them, and a Multiply of the
    /// result with `x`. Each such chain becomes one hard-swish activation of `x` under the Multiply's
    /// name (`x · relu6(x + 3) / 6`; the chain's `· 0.16666667` instead of `/ 6` can differ by one
    /// rounding), which the planner then fuses into the conv that computes `x`: no four passes over
    /// the map (on MobileNetV3Large at 224, 15% of one thread's time at batch 1, and steps too small
    /// to share between two threads). The intermediate nodes must be read only by the chain and be
    /// neither outputs nor in `keeping`.
    static func fusingHardSwish(_ graph: Graph, keeping: Set<String>) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        func only(_ name: String, readBy reader: String) -> Bool {
            !kept.contains(name) && graph.consumers(of: name) == [reader]
        }
        var replaced: [String: Node] = [:]
        var removed: Set<String> = []
        for node in graph.nodes {
            guard case .multiply = node.operation, node.inputs.count == 2 else { continue }
            for (x, gate) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
                guard x != gate, let scaled = uniformAffine(gate, in: graph, scale: Float(1.0 / 6.0), shift: 0),
                      only(scaled.name, readBy: node.name), let clipped = graph.node(named: scaled.inputs[0]),
                      case .activation(.relu6) = clipped.operation, clipped.inputs.count == 1, only(clipped.name, readBy: scaled.name),
                      let shifted = uniformAffine(clipped.inputs[0], in: graph, scale: 1, shift: 3),
                      shifted.inputs == [x], only(shifted.name, readBy: clipped.name),
                      removed.isDisjoint(with: [scaled.name, clipped.name, shifted.name]) else { continue }
                replaced[node.name] = Node(name: node.name, operation: .activation(.hardSwish), inputs: [x])
                removed.formUnion([scaled.name, clipped.name, shifted.name])
                break
            }
        }
        return try rebuilt(graph, replacing: replaced, removing: removed)
    }

    /// PyTorch exports SiLU (EfficientNet's, and Swish in its SE blocks) as `x · sigmoid(x)`: a
    /// Sigmoid and a Mul, two passes over each expanded map (on torchvision's efficientnet_b0 at
    /// 96×96, batch 16, 28% of one thread's time). Each such pair becomes one swish activation of
    /// `x` under the Mul's name, which the planner fuses into the conv that computes `x`. The
    /// Sigmoid must be read only by the Mul and be neither an output nor in `keeping`.
    static func fusingSwish(_ graph: Graph, keeping: Set<String>) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        var replaced: [String: Node] = [:]
        var removed: Set<String> = []
        for node in graph.nodes {
            guard case .multiply = node.operation, node.inputs.count == 2 else { continue }
            for (x, gate) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
                guard x != gate, let sigmoid = graph.node(named: gate), case .activation(.sigmoid) = sigmoid.operation, sigmoid.inputs == [x],
                      !kept.contains(gate), graph.consumers(of: gate) == [node.name], !removed.contains(gate) else { continue }
                replaced[node.name] = Node(name: node.name, operation: .activation(.swish), inputs: [x])
                removed.insert(gate)
                break
            }
        }
        return try rebuilt(graph, replacing: replaced, removing: removed)
    }

    /// PyTorch exports the exact GELU (ConvNeXt's, a transformer MLP's) as five element-wise
    /// steps, `Div(x, √2) → Erf → Add(1) → Mul(x, ·) → Mul(0.5)`, and bnkit's own ONNX writer as
    /// `Mul(x, 1/√2) → Erf → Add(1)` times `Mul(x, 0.5)`; read back, each is per-channel affine
    /// maps, an erf activation and a two-input multiply: five passes over the map (on
    /// torchvision's convnext_tiny at 96×96, batch 1, 18% of one thread's time). Each such chain
    /// becomes one `gelu` activation of `x` under the last step's name, which the planner fuses
    /// into the Dense or conv that computes `x`. `0.5·x·(1 + erf(x/√2))` rounded once instead of
    /// at each step: the values agree to float32 rounding. The intermediate nodes must be read only
    /// by the chain and be neither outputs nor in `keeping`.
    static func fusingGelu(_ graph: Graph, keeping: Set<String>) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        func only(_ name: String, readBy reader: String) -> Bool {
            !kept.contains(name) && graph.consumers(of: name) == [reader]
        }
        /// `1 + erf(x/√2)` computed from x by `name`'s chain: its nodes (the Add(1) first) and x.
        func shiftedErf(_ name: String) -> (nodes: [String], x: String)? {
            guard let plusOne = uniformAffine(name, in: graph, scale: 1, shift: 1), let erf = graph.node(named: plusOne.inputs[0]),
                  case .activation(.erf) = erf.operation, erf.inputs.count == 1, only(erf.name, readBy: plusOne.name),
                  let scaled = uniformAffine(erf.inputs[0], in: graph, scale: Float(0.5.squareRoot()), shift: 0, tolerance: 1e-7),
                  only(scaled.name, readBy: erf.name) else { return nil }
            return ([plusOne.name, erf.name, scaled.name], scaled.inputs[0])
        }
        var replaced: [String: Node] = [:]
        var removed: Set<String> = []
        for node in graph.nodes {
            guard case .multiply = node.operation, node.inputs.count == 2, node.inputs[0] != node.inputs[1] else { continue }
            for (other, gate) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
                guard let (chain, x) = shiftedErf(gate), only(gate, readBy: node.name) else { continue }
                if other == x {
                    // PyTorch's: the product halved by the one reader of the Mul.
                    guard only(node.name, readBy: graph.consumers(of: node.name).first ?? ""),
                          let half = uniformAffine(graph.consumers(of: node.name)[0], in: graph, scale: 0.5, shift: 0),
                          removed.isDisjoint(with: chain + [node.name]) else { continue }
                    replaced[half.name] = Node(name: half.name, operation: .activation(.gelu(approximate: false)), inputs: [x])
                    removed.formUnion(chain + [node.name])
                } else {
                    // bnkit's: x halved first.
                    guard let half = uniformAffine(other, in: graph, scale: 0.5, shift: 0), half.inputs == [x], only(half.name, readBy: node.name),
                          removed.isDisjoint(with: chain + [half.name]) else { continue }
                    replaced[node.name] = Node(name: node.name, operation: .activation(.gelu(approximate: false)), inputs: [x])
                    removed.formUnion(chain + [half.name])
                }
                break
            }
        }
        return try rebuilt(graph, replacing: replaced, removing: removed)
    }

    /// A map read only by 1×1 convolutions of stride s (ResNet's stage transitions: conv2_block3_out
    /// is read by conv3_block1_0_conv and conv3_block1_1_conv at every other pixel of every other
    /// row) is computed only at those pixels: the readers become stride 1, and the stride moves up
    /// through what computes the map pixel by pixel (activations, per-channel affine maps and
    /// batch normalizations with their moving statistics, element-wise merges of same-shaped maps,
    /// 1×1 convolutions) to the convolutions with a larger window, which take the stride (a `same`
    /// one as an explicit zero padding and `valid`, so it reads the same input pixels). A map also
    /// read elsewhere (the residual's shortcut) is subsampled for the region by a 1×1 max pooling
    /// of stride s (a copy of every s-th pixel). In ResNet50 the last block of stages 2-4 then runs
    /// on a quarter of the pixels, as OpenVINO runs it (its stride optimization). Each value left
    /// is computed from the same inputs; a windowed conv may take another kernel at stride s than
    /// at 1 (Winograd's transforms at 1, direct sums at 2), so the outputs agree to float32
    /// rounding (ResNet50 at 96×96: 9e-8 at most on probabilities up to 0.036). Nodes in `keeping`
    /// or among the outputs keep their full maps; batch normalizations with batch statistics stop it.
    static func propagatingStrides(_ graph: Graph, keeping: Set<String>, batchStatistics: Bool) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        let shapes = try graph.inferShapes()
        var consumers: [String: [String]] = [:]
        for node in graph.nodes { for input in node.inputs { consumers[input, default: []].append(node.name) } }
        let byName = Dictionary(uniqueKeysWithValues: graph.nodes.map { ($0.name, $0) })
        let order = Dictionary(uniqueKeysWithValues: graph.nodes.enumerated().map { ($1.name, $0) })
        /// The stride of a 2-D 1×1 convolution that could read a subsampled map instead.
        func pointwiseStride(_ node: Node) -> [Int]? {
            guard case .conv2d(let conv) = node.operation, !conv.isOneDimensional, conv.window.size == [1, 1],
                  conv.window.dilation == [1, 1], conv.window.padding != .causal, node.inputs.count == 1 else { return nil }
            return conv.window.strides
        }
        var nodes = graph.nodes
        var changed = false
        // Names in use (a new node takes a fresh one).
        var names = Set(graph.nodes.map(\.name))
        for seed in graph.nodes {
            guard !kept.contains(seed.name), let readers = consumers[seed.name], !readers.isEmpty,
                  let strides = pointwiseStride(byName[readers[0]]!), strides != [1, 1],
                  readers.allSatisfy({ pointwiseStride(byName[$0]!) == strides }), shapes[seed.name]?.count == 3 else { continue }
            // Which nodes compute their map only at the strided pixels (`region`), walking up from
            // the seed in reverse topological order: a node joins when all its readers did.
            var region: Set<String> = []
            // The region's pixel-by-pixel nodes: a node joins only if all its readers are such (a
            // windowed conv of the region reads its input in full).
            var passing: Set<String> = []
            var wanted: Set<String> = [seed.name]
            var windowed = 0
            for node in graph.nodes.reversed() where wanted.contains(node.name) {
                let readersJoined = node.name == seed.name
                    || (consumers[node.name] ?? []).allSatisfy { passing.contains($0) }
                guard readersJoined, !kept.contains(node.name), shapes[node.name]?.count == 3 else { continue }
                let sameShapedInputs = node.inputs.allSatisfy { shapes[$0] == shapes[node.name] }
                // Pixel by pixel: the stride moves on to the inputs. With a window: it stops here.
                let pixelwise: Bool, window: Window?
                switch node.operation {
                case .activation, .affine: (pixelwise, window) = (true, nil)
                case .batchNorm: (pixelwise, window) = (!batchStatistics, nil)
                case .add, .multiply, .merge: (pixelwise, window) = (sameShapedInputs, nil)
                case .conv2d(let conv) where !conv.isOneDimensional:
                    (pixelwise, window) = conv.window.size == [1, 1] && conv.window.strides == [1, 1] ? (true, nil) : (false, conv.window)
                case .depthwiseConv2d(let conv) where !conv.isOneDimensional: (pixelwise, window) = (false, conv.window)
                default: (pixelwise, window) = (false, nil)
                }
                if pixelwise {
                    region.insert(node.name)
                    passing.insert(node.name)
                    wanted.formUnion(node.inputs)
                } else if let window, window.strides == [1, 1], window.padding != .causal {
                    region.insert(node.name)
                    windowed += 1
                }
            }
            // Worth it only when a convolution's work shrinks (not for a copy of the seed alone).
            guard region.contains(seed.name), region.count > 1, windowed > 0 || region.contains(where: { name in
                if case .conv2d = byName[name]!.operation { true } else { false } }) else { continue }
            func fresh(_ base: String) -> String {
                var name = base, n = 2
                while names.contains(name) { name = "\(base)_\(n)"; n += 1 }
                names.insert(name)
                return name
            }
            // Maps read by the region but computed in full: subsampled once each, right after them.
            var subsampled: [String: String] = [:]
            var inserted: [Int: [Node]] = [:]
            func strided(_ input: String) throws -> String {
                if region.contains(input) { return input }
                if let name = subsampled[input] { return name }
                let name = fresh("\(input)/strided")
                subsampled[input] = name
                let pool = try Pool2D(kind: .max, size: [1, 1], strides: strides, padding: .valid)
                inserted[order[input]! + 1, default: []].append(Node(name: name, operation: .pool2d(pool), inputs: [input]))
                return name
            }
            for name in region.sorted(by: { order[$0]! < order[$1]! }) {
                var node = byName[name]!
                switch node.operation {
                case .conv2d(var conv) where conv.window.size != [1, 1]:
                    try stride(&conv.window, by: strides, input: &node, padding: &inserted, at: order[name]!, fresh: fresh)
                    node.operation = .conv2d(conv)
                case .depthwiseConv2d(var conv):
                    try stride(&conv.window, by: strides, input: &node, padding: &inserted, at: order[name]!, fresh: fresh)
                    node.operation = .depthwiseConv2d(conv)
                default:
                    node.inputs = try node.inputs.map { try strided($0) }
                }
                nodes[order[name]!] = node
            }
            for reader in Set(readers) {
                var node = nodes[order[reader]!]
                guard case .conv2d(var conv) = node.operation else { continue }
                conv.window.strides = [1, 1]
                node.operation = .conv2d(conv)
                nodes[order[reader]!] = node
            }
            // Insert the new nodes (positions from the end, so earlier ones stay valid).
            for position in inserted.keys.sorted(by: >) { nodes.insert(contentsOf: inserted[position]!, at: position) }
            changed = true
            // Later seeds index `nodes` by the original order: stop after the first region and run again.
            break
        }
        guard changed else { return graph }
        let rewritten = try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs)
        return try propagatingStrides(rewritten, keeping: keeping, batchStatistics: batchStatistics)
    }

    /// A stride-1 convolution's window made to compute only every `strides`-th output: `same`
    /// padding becomes a zero padding before it (inserted at `position`) and `valid`.
    private static func stride(_ window: inout Window, by strides: [Int], input node: inout Node, padding inserted: inout [Int: [Node]],
                               at position: Int, fresh: (String) -> String) throws {
        if window.padding == .same {
            var pads: [Int] = []
            for axis in 0..<2 {
                let total = (window.size[axis] - 1) * window.dilation[axis]
                pads += [total / 2, total - total / 2]
            }
            if pads.contains(where: { $0 > 0 }) {
                let name = fresh("\(node.name)/padding")
                inserted[position, default: []].append(Node(name: name, operation: .zeroPadding2d(pads), inputs: node.inputs))
                node.inputs = [name]
            }
            window.padding = .valid
        }
        window.strides = strides
    }
}
