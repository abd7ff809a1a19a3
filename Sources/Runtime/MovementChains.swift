import ModelIR

extension GraphRewrites {
    /// A chain of transposes and reshapes (flattens, identities), each read only by the next, is
    /// one reshape, or one transpose between two reshapes: PyTorch's channel shuffle (ShuffleNet:
    /// view(N, g, C/g, H, W), transpose(1, 2), view(N, C, H, W)), imported from NCHW, is eight such
    /// nodes on channels-last maps (each ONNX Transpose and Reshape goes to NCHW and back), and
    /// becomes (H·W, g, C/g) → (H·W, C/g, g): one pass instead of eight. Every value is moved,
    /// none computed, so the outputs are the same bit for bit. The chain's last node keeps its
    /// name; its intermediate nodes must be read only by the chain and be neither outputs nor in
    /// `keeping`.
    static func collapsingMovements(_ graph: Graph, keeping: Set<String>) throws -> Graph {
        let kept = keeping.union(graph.outputs)
        let shapes = try graph.inferShapes()
        func isMovement(_ node: Node) -> Bool {
            switch node.operation {
            case .transpose, .reshape, .flatten, .identity: node.inputs.count == 1
            default: false
            }
        }
        var consumers: [String: [String]] = [:]
        for node in graph.nodes { for input in node.inputs { consumers[input, default: []].append(node.name) } }
        func chainable(_ name: String) -> Node? {
            guard !kept.contains(name), let readers = consumers[name], readers.count == 1, let next = graph.node(named: readers[0]),
                  isMovement(next) else { return nil }
            return next
        }
        var replaced: [String: [Node]] = [:]
        var removed: Set<String> = []
        for node in graph.nodes where isMovement(node) && !removed.contains(node.name) {
            // Chains start at a movement whose input is not itself a link of one.
            if let producer = graph.node(named: node.inputs[0]), isMovement(producer), chainable(producer.name) != nil { continue }
            var chain = [node]
            while let next = chainable(chain.last!.name) { chain.append(next) }
            guard chain.count >= 2, chain.contains(where: { if case .transpose = $0.operation { true } else { false } }),
                  let source = shapes[node.inputs[0]], let view = MovementView(source: source, chain.map(\.operation), shapes: chain.map { shapes[$0.name]! })
            else { continue }
            let last = chain.last!
            guard graph.node(named: last.name + "/factors") == nil, graph.node(named: last.name + "/transpose") == nil else { continue }
            let (factors, perm) = view.collapsed()
            var nodes: [Node] = []
            var current = node.inputs[0]
            func append(_ suffix: String, _ op: Op) {
                let name = last.name + suffix
                nodes.append(Node(name: name, operation: op, inputs: [current]))
                current = name
            }
            if perm != Array(perm.indices) {
                if factors != source { append("/factors", .reshape(factors)) }
                append(perm.map({ factors[$0] }) == shapes[last.name]! ? "" : "/transpose", .transpose(perm))
            }
            if nodes.isEmpty || nodes.last!.name != last.name { append("", .reshape(shapes[last.name]!)) }
            replaced[last.name] = nodes
            removed.formUnion(chain.dropLast().map(\.name))
        }
        guard !replaced.isEmpty else { return graph }
        let nodes = graph.nodes.flatMap { node -> [Node] in removed.contains(node.name) ? [] : replaced[node.name] ?? [node] }
        return try Graph(name: graph.name, nodes: nodes, outputs: graph.outputs)
    }
}

/// A value's elements as a view of a source tensor: the source (row-major) cut into factors
/// ("atoms"), and the view's axes each a run of atoms in the view's order. Transposes reorder the
/// axes, reshapes regroup the atoms (cutting one in two where an axis boundary falls inside it).
struct MovementView {
    /// Atom sizes by id, and the ids in the source's (row-major) order.
    private var sizes: [Int]
    private var sourceOrder: [Int]
    /// The view's axes, each a run of atom ids (none for an axis of size 1).
    private var axes: [[Int]]

    /// The view after `ops` (transpose, reshape, flatten, identity) from `source`; nil when a
    /// reshape cannot be followed (it cannot happen for valid shapes, checked anyway).
    init?(source: [Int], _ ops: [Op], shapes: [[Int]]) {
        sizes = []
        sourceOrder = []
        axes = []
        for size in source {
            if size == 1 { axes.append([]); continue }
            axes.append([sizes.count])
            sourceOrder.append(sizes.count)
            sizes.append(size)
        }
        for (op, shape) in zip(ops, shapes) {
            switch op {
            case .transpose(let perm):
                guard perm.count == axes.count else { return nil }
                axes = perm.map { axes[$0] }
            case .reshape, .flatten:
                guard regroup(shape) else { return nil }
            case .identity:
                break
            default:
                return nil
            }
        }
    }

    private mutating func regroup(_ shape: [Int]) -> Bool {
        var sequence = axes.flatMap { $0 }
        var i = 0
        var result: [[Int]] = []
        for target in shape {
            var need = target, axis: [Int] = []
            while need > 1 {
                guard i < sequence.count else { return false }
                let atom = sequence[i], size = sizes[atom]
                if size <= need {
                    guard need % size == 0 else { return false }
                    need /= size
                } else {
                    // Cut the atom: its first `need` (outer) part ends this axis.
                    guard size % need == 0 else { return false }
                    let inner = sizes.count
                    sizes[atom] = need
                    sizes.append(size / need)
                    sourceOrder.insert(inner, at: sourceOrder.firstIndex(of: atom)! + 1)
                    sequence.insert(inner, at: i + 1)
                    need = 1
                }
                axis.append(atom)
                i += 1
            }
            result.append(axis)
        }
        guard i == sequence.count else { return false }
        axes = result
        return true
    }

    /// The source as factors (row-major, runs of atoms adjacent in both orders merged) and the
    /// permutation of them that reads the view's elements in order.
    func collapsed() -> (factors: [Int], perm: [Int]) {
        let sequence = axes.flatMap { $0 }
        let position = Dictionary(uniqueKeysWithValues: sourceOrder.enumerated().map { ($0.element, $0.offset) })
        // Runs of the view's atoms that are consecutive in the source too.
        var runs: [[Int]] = []
        for atom in sequence {
            if let previous = runs.last?.last, position[atom]! == position[previous]! + 1 { runs[runs.count - 1].append(atom) } else { runs.append([atom]) }
        }
        let bySource = runs.indices.sorted { position[runs[$0][0]]! < position[runs[$1][0]]! }
        let factors = bySource.map { runs[$0].reduce(1) { $0 * sizes[$1] } }
        let rank = Dictionary(uniqueKeysWithValues: bySource.enumerated().map { ($0.element, $0.offset) })
        return (factors.isEmpty ? [1] : factors, runs.isEmpty ? [0] : runs.indices.map { rank[$0]! })
    }
}
