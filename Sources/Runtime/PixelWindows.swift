import ModelIR

/// Where each output pixel of a map comes from when its pixels are moved, not computed: a zero
/// padding, a cropping, a 1×1 pooling of any stride (one value a window: the value), or any chain
/// of them. On each axis, output i is input i · stride + offset when that lies in `first...last`
/// (inside the input), else zero. A chain composes into one (`followed(by:)`), so it runs as one
/// pass (`Kernels.window`), reading only the pixels it keeps.
struct PixelWindow: Equatable {
    struct Axis: Equatable {
        var stride: Int
        var offset: Int
        /// The input indices read (inclusive; empty when `first > last`).
        var first: Int
        var last: Int
        var outSize: Int

        /// `self`, then `next` (which reads `self`'s output): input `(i · next.stride + next.offset) ·
        /// stride + offset`, kept where both keep it.
        func followed(by next: Axis) -> Axis {
            Axis(stride: stride * next.stride, offset: next.offset * stride + offset,
                 first: max(first, next.first * stride + offset), last: min(last, next.last * stride + offset),
                 outSize: next.outSize)
        }

        /// The output indices whose input is kept: `lower..<upper` (empty when none).
        var kept: Range<Int> {
            // The smallest i with i · stride + offset >= first, and one past the largest <= last.
            func ceilDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? (a + b - 1) / b : -((-a) / b) }
            func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
            let lower = max(0, ceilDiv(first - offset, stride))
            let upper = min(outSize, floorDiv(last - offset, stride) + 1)
            return lower..<max(lower, upper)
        }
    }

    var height: Axis
    var width: Axis
    /// The input's height and width.
    var inHeight: Int
    var inWidth: Int

    var outHeight: Int { height.outSize }
    var outWidth: Int { width.outSize }

    /// The window of one node (`input`, `output`: its per-sample shapes, (h, w, c) or (steps, c)),
    /// or nil for any other operation: a zero padding (`pad2d` only with zeros), a cropping, or a
    /// pooling over 1×1 windows with nothing padded.
    init?(_ op: Op, input: [Int], output: [Int]) {
        guard (input.count == 3 || input.count == 2), input.count == output.count, input.last == output.last else { return nil }
        let (h, w) = input.count == 3 ? (input[0], input[1]) : (1, input[0])
        let (oh, ow) = output.count == 3 ? (output[0], output[1]) : (1, output[0])
        (inHeight, inWidth) = (h, w)
        switch op {
        case .zeroPadding2d(let pads), .pad2d(let pads, 0):
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }) else { return nil }
            height = Axis(stride: 1, offset: -pads[0], first: 0, last: h - 1, outSize: oh)
            width = Axis(stride: 1, offset: -pads[2], first: 0, last: w - 1, outSize: ow)
        case .cropping2d(let crops):
            guard crops.count == 4, crops.allSatisfy({ $0 >= 0 }) else { return nil }
            height = Axis(stride: 1, offset: crops[0], first: 0, last: h - 1, outSize: oh)
            width = Axis(stride: 1, offset: crops[2], first: 0, last: w - 1, outSize: ow)
        case .pool2d(let pool):
            guard pool.window.size == [1, 1], pool.window.padding != .causal,
                  pool.window.output(axis: 0, input: h).padBefore == 0, pool.window.output(axis: 1, input: w).padBefore == 0,
                  oh == (h - 1) / pool.window.strides[0] + 1, ow == (w - 1) / pool.window.strides[1] + 1 else { return nil }
            height = Axis(stride: pool.window.strides[0], offset: 0, first: 0, last: h - 1, outSize: oh)
            width = Axis(stride: pool.window.strides[1], offset: 0, first: 0, last: w - 1, outSize: ow)
        default:
            return nil
        }
        guard oh == height.outSize, ow == width.outSize else { return nil }
    }

    /// `self`, then `next` over its output.
    func followed(by next: PixelWindow) -> PixelWindow {
        var window = self
        window.height = height.followed(by: next.height)
        window.width = width.followed(by: next.width)
        return window
    }
}

/// Chains of two or more pixel windows (zero paddings, croppings, 1×1 poolings), each link but the
/// last read only by the next: NASNet's reductions shift a map by one pixel and take every other
/// one (a zero padding of 1 below and right, a cropping of 1 above and left, a 1×1 average pooling
/// of stride 2), three passes over the whole map that one pass over a quarter of it replaces. The
/// values are moved, none computed: the same bit for bit (but for the sign of a zero an average
/// pooling of one value would have made +0).
enum WindowChains {
    struct Chain {
        /// The map the first link reads.
        var source: String
        var window: PixelWindow
        /// The links before the last (no step of their own).
        var links: [String]
    }

    /// The chains of `graph` by the name of their last link. `excluded`: nodes already taken by
    /// another fusion; `kept`: nodes whose values must exist (outputs, observed).
    static func find(in graph: Graph, shapes: [String: [Int]], excluded: Set<String>, kept: Set<String>) -> [String: Chain] {
        func window(_ node: Node) -> PixelWindow? {
            guard node.inputs.count == 1, !excluded.contains(node.name), let input = shapes[node.inputs[0]],
                  let output = shapes[node.name] else { return nil }
            return PixelWindow(node.operation, input: input, output: output)
        }
        /// The link `node` continues: its input, when that is a window read only by it.
        func previous(_ node: Node) -> Node? {
            guard let producer = graph.node(named: node.inputs[0]), window(producer) != nil, !kept.contains(producer.name),
                  graph.consumers(of: producer.name) == [node.name] else { return nil }
            return producer
        }
        var chains: [String: Chain] = [:]
        for node in graph.nodes {
            guard let last = window(node) else { continue }
            // A chain ends at a link no window continues.
            if let reader = graph.consumers(of: node.name).first.flatMap({ graph.node(named: $0) }), window(reader) != nil,
               previous(reader)?.name == node.name { continue }
            var links: [Node] = []
            var current = node
            while let link = previous(current) {
                links.insert(link, at: 0)
                current = link
            }
            guard !links.isEmpty else { continue }
            var composed = window(links[0])!
            for link in links.dropFirst() { composed = composed.followed(by: window(link)!) }
            chains[node.name] = Chain(source: links[0].inputs[0], window: composed.followed(by: last), links: links.map(\.name))
        }
        return chains
    }
}
