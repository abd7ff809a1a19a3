import ModelIR

/// Rewrites of a graph into an equivalent one that plans into fewer steps, run before the
/// executor plans it. Each keeps every node name that can be asked for (the outputs and the
/// observed nodes) and the values up to float32 rounding.
enum GraphRewrites {
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
        func isUniformAffine(_ node: Node, scale: Float, shift: Float) -> Bool {
            guard case .affine(let affine) = node.operation, node.inputs.count == 1 else { return false }
            return affine.scale.values.allSatisfy { $0 == scale } && affine.shift.values.allSatisfy { $0 == shift }
        }
        var replaced: [String: Node] = [:]
        var removed: Set<String> = []
        for node in graph.nodes {
            guard case .multiply = node.operation, node.inputs.count == 2 else { continue }
            for (x, gate) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
                guard x != gate, let scaled = graph.node(named: gate), isUniformAffine(scaled, scale: Float(1.0 / 6.0), shift: 0),
                      only(scaled.name, readBy: node.name), let clipped = graph.node(named: scaled.inputs[0]),
                      case .activation(.relu6) = clipped.operation, clipped.inputs.count == 1, only(clipped.name, readBy: scaled.name),
                      let shifted = graph.node(named: clipped.inputs[0]), isUniformAffine(shifted, scale: 1, shift: 3),
                      shifted.inputs == [x], only(shifted.name, readBy: clipped.name),
                      removed.isDisjoint(with: [scaled.name, clipped.name, shifted.name]) else { continue }
                replaced[node.name] = Node(name: node.name, operation: .activation(.hardSwish), inputs: [x])
                removed.formUnion([scaled.name, clipped.name, shifted.name])
                break
            }
        }
        guard !replaced.isEmpty else { return graph }
        let nodes = graph.nodes.compactMap { node in removed.contains(node.name) ? nil : replaced[node.name] ?? node }
        return try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs)
    }
}
