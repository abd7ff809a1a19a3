import Foundation
import ModelIR

/// Why a model cannot run.
public enum RuntimeError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidModel(ModelError)
    case unsupported(node: String, detail: String)
    case badInputSize(expected: Int, found: Int)

    public var description: String {
        switch self {
        case let .invalidModel(error): "invalid model: \(error)"
        case let .unsupported(node, detail): "layer '\(node)' cannot run: \(detail)"
        case let .badInputSize(expected, found): "input holds \(found) values, expected a multiple of \(expected) (one sample)"
        }
    }
}

/// Which statistics a BatchNormalization layer normalizes with.
public enum BatchNormStatistics: String, Sendable, CaseIterable {
    /// The stored moving mean and variance (inference; the default).
    case running
    /// The mean and population variance of the batch being run, per channel over
    /// every sample (and pixel), as Keras computes in `model(x, training=True)`.
    /// The whole batch is one unit: it is not split into tiles or across threads.
    case batch
}

/// Receives the values of an observed node after the step that writes them:
/// the node's position in `observing`, its values for the samples of one part of
/// the batch (samples after one another), and the worker that ran that part
/// (`0..<threads`; parts of one worker never overlap in time).
public typealias ExecutionObserver = @Sendable (_ observation: Int, _ values: UnsafeBufferPointer<Float>, _ worker: Int) -> Void

/// Runs a `Graph` on the CPU, a batch at a time.
///
/// The plan (what each step reads and writes) is made once at init; the
/// weights are converted once (BatchNorm becomes its affine map, computed in
/// Double and rounded once to Float).
public final class Executor: @unchecked Sendable {
    /// Sample shape of the input and output (batch axis excluded).
    public let inputShape: [Int]
    public let outputShape: [Int]
    /// Values per sample.
    public let inputSize: Int
    public let outputSize: Int

    private let steps: [Step]
    private let nodeCount: Int
    private let nodeNames: [String]
    private let sizes: [Int]
    /// The memory plan: the buffer each node's values live in (nil: the input, the output,
    /// or never written) and the buffers' sizes in floats per sample.
    private let bufferOfNode: [Int?]
    private let bufferSizes: [Int]
    private let inputIndex: Int
    private let outputIndex: Int
    /// Samples run through the steps together (a tile): about 1 MiB of the largest activation
    /// where that is 8 to 256 samples; 4 to 8 samples when one sample's is 128 KiB to 1 MiB (at
    /// least 4 MiB of it, more with heavy weights); fewer, down to 1, when one sample's largest
    /// activation alone is over 1 MiB (224×224 ImageNet networks), balancing the weights streamed
    /// per tile against the maps spilled from cache.
    public let samplesPerTile: Int
    /// Whether fewer samples than threads run each step split across the threads (else one thread runs them).
    public let splitsSamples: Bool
    /// The first step of a classifier head (see `headStart`): with several tiles, the tiles stop
    /// before it and it runs once over the whole batch, its weights streamed once a batch.
    private let headStart: Int?
    /// The layer the classifier head starts at, if the plan has one (for tests and `--profile`).
    package var headLayer: String? { headStart.map { nodeNames[steps[$0].destination] } }
    /// The largest activation (floats per sample) from which a sample's steps are split: 128 KiB.
    static let smallestSplitSample = 32768
    /// What BatchNormalization layers normalize with.
    public let batchNormStatistics: BatchNormStatistics
    /// Node index -> position in `observing`; the nodes' values go to the run's observer.
    private let observed: [Int: Int]
    /// The observed node written by each step (by step position), if any.
    private let observedAfterStep: [Int?]
    /// For each step, where a chain of small-map bottleneck steps starting there ends (exclusive;
    /// the step itself when it starts none): consecutive `invertedBottleneck` steps, none but the
    /// last observed, that share one hand-over when one tile is split across the threads.
    private let chainEnds: [Int]

    private enum Kind {
        /// `panels`: a large kernel (over `densePanelFloats`) prepacked, read sequentially by the GEMM.
        case dense(kernel: Tensor, panels: Panels?, bias: Tensor?, inputs: Int, units: Int, activation: ActivationKind)
        /// `panels`: the kernel as (kh·kw·in, out) GEMM panels, packed when the model is planned
        /// (groups 1 on more than one input channel), so no call repacks it. A second source is a
        /// residual added before the activation (a following Add fused in).
        case conv2d(kernel: Tensor, panels: Panels?, bias: Tensor?, geometry: Kernels.Spatial, groups: Int, activation: ActivationKind)
        /// A one-channel conv + activation + 2×2 stride-2 max pooling, in one pass.
        case conv2dMaxPool(kernel: Tensor, bias: Tensor?, geometry: Kernels.Spatial, activation: ActivationKind)
        /// A 3×3 stride-1 conv by Winograd F(2×2, 3×3) (kernel transformed at plan time),
        /// + activation, + 2×2 stride-2 max pooling when `pool`.
        case winograd(transformed: Panels, bias: Tensor?, geometry: Kernels.Spatial, activation: ActivationKind, pool: Bool)
        /// `reluInput`: the input read through a ReLU (a standalone ReLU before the conv, fused in).
        case depthwise(kernel: Tensor, bias: Tensor?, geometry: Kernels.Spatial, multiplier: Int, activation: ActivationKind,
                       reluInput: Bool)
        /// Depthwise (into scratch, `geometry` its shape) then the pointwise GEMM, bias and activation,
        /// `panels` the pointwise kernel prepacked (more than one depthwise output channel).
        case separable(depthwise: DepthwiseStage, pointwise: Tensor, panels: Panels?, bias: Tensor?, geometry: Kernels.Spatial,
                       units: Int, activation: ActivationKind)
        /// A pointwise conv and the depthwise conv reading it, in strips of rows (`PointwiseDepthwise`).
        case pointwiseDepthwise(PointwiseDepthwise)
        /// Squeeze-and-excitation's product and the pointwise conv reading it (`ScaledPointwise`);
        /// sources the features, the scales and the residual, if any.
        case scaledPointwise(ScaledPointwise)
        /// A grouped conv with more than one input channel per group, its weights packed (`GroupedConvolution`).
        case grouped(GroupedConvolution)
        /// A small map's inverted-residual block (expansion, depthwise conv, projection, residual) in parts.
        case invertedBottleneck(InvertedBottleneck)
        /// A strided transposed conv: GEMM and scatter (`TransposedConvolution`).
        case transposedConv(TransposedConvolution)
        /// A dilated conv, tap by tap where each reaches the input (`DilatedConvolution`).
        case dilated(DilatedConvolution)
        /// Layer normalization over the trailing `inner` values of each row.
        case layerNormTrailing(inner: Int, gamma: Tensor?, beta: Tensor?, epsilon: Double)
        /// Layer normalization over any axes: each element's statistics group and parameter index.
        case layerNormIndexed(group: [Int32], parameter: [Int32], groups: Int, sampleSize: Int, gamma: Tensor?, beta: Tensor?, epsilon: Double)
        /// `channelsFirst`: written as the (channels, height, width) map, the NHWC → NCHW transpose
        /// that was its only reader done as it writes (`upsampledFor`).
        case upsample(height: Int, width: Int, channels: Int, factorY: Int, factorX: Int, bilinear: Bool, channelsFirst: Bool)
        case crop(height: Int, width: Int, channels: Int, top: Int, left: Int, outHeight: Int, outWidth: Int)
        /// A chain of zero paddings, croppings and 1×1 poolings in one pass (`WindowChains`).
        case window(PixelWindow, channels: Int)
        /// Subtract, maximum, minimum, average (broadcast).
        case merge(MergeOperation, inputs: [[Int]], output: [Int])
        case pool(geometry: Kernels.Spatial, isMax: Bool)
        case globalPool(pixels: Int, channels: Int, isMax: Bool)
        case zeroPad(height: Int, width: Int, channels: Int, top: Int, left: Int, outHeight: Int, outWidth: Int, value: Float)
        /// Output axis i is input axis perm[i] (per-sample shapes).
        case transpose(input: [Int], perm: [Int])
        case affine(scale: [Float], shift: [Float], channels: Int, activation: ActivationKind)
        /// BatchNormalization with the batch's own statistics (`BatchNormStatistics.batch`).
        case batchNormFromBatch(gamma: [Double]?, beta: [Double]?, epsilon: Double, channels: Int)
        case activation(ActivationKind, channels: Int)
        /// Two inputs of one shape, then the activation.
        case add(activation: ActivationKind, channels: Int)
        case multiply
        /// Squeeze-and-excitation's product: input `scaled` (pixels × channels per sample) times
        /// the other input's one value per channel.
        case scaleChannels(scaled: Int, pixels: Int, channels: Int)
        /// Add or multiply of inputs of different (broadcastable) per-sample shapes.
        case broadcast(isAdd: Bool, inputs: [[Int]], output: [Int])
        /// Per sample: `outer` blocks, each the inputs' chunks of the given sizes.
        /// Each input's chunk copied in turn, through an element-wise `activation` (all its readers' one, fused in).
        case concatenate(outer: Int, chunks: [Int], activation: ActivationKind)
        /// Per sample: `outer` blocks of `size` values, of which `start..<start + count` are kept.
        case slice(outer: Int, size: Int, start: Int, count: Int)
        case copy
    }

    private struct Step {
        let kind: Kind
        let sources: [Int]
        let destination: Int
        /// A source whose buffer the step may write its output into, when no later step reads it
        /// (`planMemory`): one each output value reads only where it writes it, before it writes it.
        var overwrites: Int? = nil
    }

    /// Plans `graph`. BatchNormalization layers use `batchNormStatistics`; the values of
    /// the nodes named in `observing` are handed to the observer given to `run` (they are
    /// kept out of fusions that would leave them unwritten).
    public init(graph original: Graph, batchNormStatistics: BatchNormStatistics = .running, observing: [String] = []) throws {
        let graph: Graph
        let shapes: [String: [Int]]
        let input: Node
        do {
            let plain = try GraphRewrites.transposedConvsAsConvs(try GraphRewrites.bypassingIdentities(original, keeping: Set(observing)))
            let collapsed = try GraphRewrites.collapsingMovements(plain, keeping: Set(observing))
            let swish = try GraphRewrites.fusingGelu(try GraphRewrites.fusingSwish(collapsed, keeping: Set(observing)),
                                                     keeping: Set(observing))
            graph = try GraphRewrites.propagatingStrides(try GraphRewrites.fusingHardSwish(swish, keeping: Set(observing)),
                                                         keeping: Set(observing), batchStatistics: batchNormStatistics == .batch)
            shapes = try graph.inferShapes()
            input = try graph.inputNode()
        } catch let error as ModelError {
            throw RuntimeError.invalidModel(error)
        }
        guard graph.outputs.count == 1 else {
            throw RuntimeError.unsupported(node: graph.outputs.joined(separator: ", "),
                                           detail: "the model has \(graph.outputs.count) outputs; running supports one")
        }
        var index: [String: Int] = [:]
        for (i, node) in graph.nodes.enumerated() { index[node.name] = i }
        var observed: [Int: Int] = [:]
        for (position, name) in observing.enumerated() {
            guard let i = index[name] else { throw RuntimeError.invalidModel(.unknownOutput(name)) }
            observed[i] = position
        }
        let observedNames = Set(observing)
        // A Dense, Conv2D, DepthwiseConv2D, SeparableConv2D or two-input Add whose only reader is an activation
        // applies it as it writes (in the GEMM epilogue, or on its output while it is in cache)
        // straight into the activation's buffer: no separate pass, no copy. With several readers,
        // all the same activation (NASNet's stem, read by five ReLUs), the others read the first's
        // buffer (`aliasOf`: a node whose values are another's).
        var fusedActivation: [String: (activation: Activation, into: String)] = [:]
        var absorbed: Set<String> = []
        var aliasOf: [String: String] = [:]
        /// The activation every reader of `node` is (reading only it; the readers after the first
        /// neither outputs nor observed), nil when they differ.
        func sameActivationReaders(of node: String) -> (activation: Activation, readers: [Node])? {
            let readers = graph.consumers(of: node).compactMap { graph.node(named: $0) }
            guard case .activation(let activation)? = readers.first?.operation else { return nil }
            for (position, reader) in readers.enumerated() {
                guard case .activation(let other) = reader.operation, other == activation, reader.inputs == [node] else { return nil }
                if position > 0, graph.outputs.contains(reader.name) || observedNames.contains(reader.name) { return nil }
            }
            return (activation, readers)
        }
        for node in graph.nodes {
            switch node.operation {
            case .dense, .conv2d, .depthwiseConv2d, .separableConv2d, .affine, .conv2dTranspose: break
            // A BatchNormalization no conv absorbed, then its activation (DenseNet's BN, ReLU,
            // 1×1 conv): one pass. Not with the batch's statistics (recalibration), whose step
            // applies none.
            case .batchNorm where batchNormStatistics != .batch: break
            case .add where node.inputs.count == 2 && Set(node.inputs.map { shapes[$0]! }).count == 1: break
            default: continue
            }
            guard (node.operation.fusedActivation ?? .linear) == .linear, !graph.outputs.contains(node.name),
                  !observedNames.contains(node.name) else { continue }
            guard let (activation, readers) = sameActivationReaders(of: node.name) else { continue }
            fusedActivation[node.name] = (activation, readers[0].name)
            for reader in readers {
                absorbed.insert(reader.name)
                if reader.name != readers[0].name { aliasOf[reader.name] = readers[0].name }
            }
        }
        // A Concatenate every reader of which is the same element-wise activation (NASNet's cell
        // outputs, each read by two or three ReLUs): the concatenation applies it as it copies,
        // and the activations' readers read the concatenation (`aliasOf`): no pass per activation.
        var activatedConcatenation: [String: Activation] = [:]
        for node in graph.nodes {
            guard case .concatenate = node.operation, !graph.outputs.contains(node.name), !observedNames.contains(node.name),
                  let (activation, readers) = sameActivationReaders(of: node.name), Kernels.elementwiseCode(Self.kind(activation)) != nil,
                  !graph.outputs.contains(readers[0].name), !observedNames.contains(readers[0].name) else { continue }
            activatedConcatenation[node.name] = activation
            for reader in readers {
                aliasOf[reader.name] = node.name
                absorbed.insert(reader.name)
            }
        }
        // A one-channel Conv2D whose (activated) output only a 2×2 stride-2 max pooling
        // reads: the direct kernel pools as it goes and writes the pooled output.
        var pooledInto: [String: String] = [:]
        for node in graph.nodes {
            guard case .conv2d(let conv) = node.operation else { continue }
            let fused = fusedActivation[node.name]
            let produced = fused?.into ?? node.name
            let readers = graph.consumers(of: produced)
            // (Never when other activations read the values as `produced`'s alias: they must exist.)
            guard !aliasOf.values.contains(produced), !graph.outputs.contains(produced), !observedNames.contains(produced), !observedNames.contains(node.name), readers.count == 1, let reader = graph.node(named: readers[0]),
                  reader.inputs == [produced], case .pool2d(let pool) = reader.operation, pool.kind == .max,
                  pool.window.size == [2, 2], pool.window.strides == [2, 2] else { continue }
            let convShape = shapes[node.name]!, poolShape = shapes[reader.name]!
            let poolGeometry = Self.geometry(pool.window, convShape, poolShape)
            guard poolGeometry.padTop == 0, poolGeometry.padLeft == 0,
                  poolShape[0] == convShape[0] / 2, poolShape[1] == convShape[1] / 2,
                  case let convGeometry = Self.geometry(conv.window, shapes[node.inputs[0]]!, convShape),
                  case let activation = Self.kind(fused?.activation ?? conv.activation),
                  Kernels.canFuseMaxPool(convGeometry, groups: conv.groups, activation: activation)
                    || Kernels.canUseWinograd(convGeometry, groups: conv.groups, activation: activation) else { continue }
            pooledInto[node.name] = reader.name
            absorbed.insert(reader.name)
        }
        // Whether every value of a node is >= 0 (its activation is one whose results are): a zero
        // border then never raises a max pooling's maximum.
        func nonNegative(_ name: String) -> Bool {
            let activation: Activation
            switch graph.node(named: name)?.operation {
            case .activation(let a): activation = a
            case .conv2d(let conv): activation = conv.activation
            case .depthwiseConv2d(let conv): activation = conv.activation
            case .dense(let dense): activation = dense.activation
            default: return false
            }
            switch activation {
            case .relu, .relu6, .sigmoid, .hardSigmoid: return true
            default: return false
            }
        }
        // A zero padding whose only reader is a Conv2D or DepthwiseConv2D: the conv reads the
        // unpadded input with the padding added to its own (taps outside the input add nothing),
        // so the padded copy is never made. Likewise before a max pooling of values >= 0 (ResNet's
        // stem: ReLU, a 1-pixel border, a 3x3 stride-2 max pool) when every window keeps at least
        // one input pixel: the pooling skips taps outside the input, and a zero never exceeds the
        // maximum of values >= 0 (a 112x112x64 copy saved per ResNet50 image). A border of -inf
        // (an ONNX MaxPool's own pads, as the importer writes them) before a max pooling, whatever
        // the values: a tap of -inf never is the maximum (torchvision's ResNet stems at 96, batch
        // 1: a 50x50x64 copy, 57 µs an image on one thread and 152 on two, AMD Zen 3).
        var paddingFor: [String: (source: String, top: Int, left: Int)] = [:]
        for node in graph.nodes {
            let pads: [Int], lowest: Bool
            switch node.operation {
            case .zeroPadding2d(let p): pads = p; lowest = false
            case .pad2d(let p, let value) where value == 0: pads = p; lowest = false
            case .pad2d(let p, let value) where value == -.infinity: pads = p; lowest = true
            default: continue
            }
            guard pads.count == 4, pads.allSatisfy({ $0 >= 0 }), shapes[node.name]!.count == 3, node.inputs.count == 1,
                  !graph.outputs.contains(node.name), !observedNames.contains(node.name) else { continue }
            let readers = graph.consumers(of: node.name)
            guard readers.count == 1, let reader = graph.node(named: readers[0]), reader.inputs == [node.name] else { continue }
            switch reader.operation {
            case .conv2d, .depthwiseConv2d, .separableConv2d: guard !lowest else { continue }
            case .pool2d(let pool) where pool.kind == .max && (lowest || nonNegative(node.inputs[0])):
                guard let source = shapes[node.inputs[0]], source.count == 3 else { continue }
                let g = Self.geometry(pool.window, shapes[node.name]!, shapes[reader.name]!)
                    .unpadded(height: source[0], width: source[1], top: pads[0], left: pads[2])
                // The first and last windows of each axis hold an input row and column.
                guard g.padTop < g.kernelHeight, g.padLeft < g.kernelWidth, (g.outHeight - 1) * g.strideY - g.padTop < g.inHeight,
                      (g.outWidth - 1) * g.strideX - g.padLeft < g.inWidth else { continue }
            default: continue
            }
            paddingFor[reader.name] = (node.inputs[0], pads[0], pads[2])
            absorbed.insert(node.name)
        }
        // A ReLU whose only reader is a DepthwiseConv2D or SeparableConv2D (directly, or through a
        // zero padding folded into it), not fused into its own producer: the conv reads the ReLU's
        // input through a ReLU as it loads it (a zero border stays zero), so the ReLU's pass over
        // the map is never made (NASNet's and Xception's ReLU before each separable conv).
        var reluInputFor: [String: String] = [:]
        for node in graph.nodes {
            switch node.operation {
            case .depthwiseConv2d, .separableConv2d: break
            default: continue
            }
            let read = paddingFor[node.name]?.source ?? node.inputs[0]
            guard let relu = graph.node(named: read), case .activation(.relu) = relu.operation, relu.inputs.count == 1,
                  !absorbed.contains(relu.name), !graph.outputs.contains(relu.name), !observedNames.contains(relu.name),
                  graph.consumers(of: relu.name).count == 1 else { continue }
            reluInputFor[node.name] = relu.inputs[0]
            absorbed.insert(relu.name)
        }
        // Zero paddings, croppings and 1×1 poolings read one by the next: one pass (`WindowChains`).
        let windowFor = WindowChains.find(in: graph, shapes: shapes, excluded: absorbed, kept: observedNames.union(graph.outputs))
        for chain in windowFor.values { absorbed.formUnion(chain.links) }
        /// A conv's geometry, over the unpadded input when a padding was folded into it.
        func convGeometry(_ window: Window, _ node: Node, _ outShape: [Int]) -> Kernels.Spatial {
            let g = Self.geometry(window, shapes[node.inputs[0]]!, outShape)
            guard let padding = paddingFor[node.name], let source = shapes[padding.source] else { return g }
            return g.unpadded(height: source[0], width: source[1], top: padding.top, left: padding.left)
        }
        func sources(_ node: Node) -> [Int] {
            node.inputs.map { name in
                let read = windowFor[node.name]?.source ?? reluInputFor[node.name] ?? paddingFor[node.name]?.source ?? name
                return index[aliasOf[read] ?? read]!
            }
        }
        // A Conv2D run by the prepacked GEMM (groups 1, more than one input channel, not Winograd)
        // whose only reader is a two-input Add of the same shape, the Add's other input computed
        // before the conv: the GEMM adds that input (the residual) as it stores, then the Add's
        // activation, straight into the Add's (or its activation's) buffer. The same sums as the
        // separate Add, bit for bit, without a pass over both maps.
        var residualInto: [String: (add: String, other: String)] = [:]
        for (position, node) in graph.nodes.enumerated() {
            guard case .conv2d(let conv) = node.operation, conv.groups == 1, conv.activation == .linear,
                  fusedActivation[node.name] == nil, pooledInto[node.name] == nil, !graph.outputs.contains(node.name),
                  !observedNames.contains(node.name) else { continue }
            let geometry = convGeometry(conv.window, node, shapes[node.name]!)
            guard geometry.inChannels > 1, !Kernels.canUseWinograd(geometry, groups: 1) else { continue }
            let readers = graph.consumers(of: node.name)
            guard readers.count == 1, let add = graph.node(named: readers[0]), case .add = add.operation, add.inputs.count == 2,
                  add.inputs.filter({ $0 == node.name }).count == 1, let other = add.inputs.first(where: { $0 != node.name }),
                  shapes[other] == shapes[node.name], shapes[add.name] == shapes[node.name], let otherPosition = index[aliasOf[other] ?? other],
                  otherPosition < position, !observedNames.contains(add.name) else { continue }
            residualInto[node.name] = (add.name, other)
            absorbed.insert(add.name)
        }
        // A pointwise Conv2D (the prepacked GEMM, an element-wise activation) whose map — over
        // `smallestStripedMap`, more than L2 holds for a batch — only a DepthwiseConv2D reads (directly, or
        // through a zero padding folded into it): the two run together in strips of rows
        // (`PointwiseDepthwise`), the map never written whole (MobileNetV2's and EfficientNet's
        // 112×112×96 expansions at 224: 4.8 MB written and read back an image otherwise).
        var depthwiseAfter: [String: String] = [:]
        /// The only reader of `produced` when it is a DepthwiseConv2D, or the DepthwiseConv2D a zero
        /// padding that alone reads `produced` was folded into.
        func depthwiseReader(of produced: String) -> Node? {
            let readers = graph.consumers(of: produced)
            guard readers.count == 1, let reader = graph.node(named: readers[0]), reader.inputs == [produced] else { return nil }
            if case .depthwiseConv2d = reader.operation { return reader }
            guard absorbed.contains(reader.name), case let next = graph.consumers(of: reader.name), next.count == 1,
                  paddingFor[next[0]]?.source == produced, let folded = graph.node(named: next[0]),
                  case .depthwiseConv2d = folded.operation else { return nil }
            return folded
        }
        for node in graph.nodes {
            guard case .conv2d(let conv) = node.operation, conv.groups == 1, pooledInto[node.name] == nil, residualInto[node.name] == nil,
                  paddingFor[node.name] == nil, !graph.outputs.contains(node.name), !observedNames.contains(node.name) else { continue }
            let geometry = convGeometry(conv.window, node, shapes[node.name]!)
            let produced = fusedActivation[node.name]?.into ?? node.name
            guard Kernels.isPointwise(geometry), geometry.inChannels > 1,
                  Kernels.elementwiseCode(Self.kind(fusedActivation[node.name]?.activation ?? conv.activation)) != nil,
                  !aliasOf.values.contains(produced), !graph.outputs.contains(produced), !observedNames.contains(produced),
                  shapes[produced]!.reduce(1, *) >= Self.smallestStripedMap else { continue }
            guard let depthwise = depthwiseReader(of: produced),
                  case .depthwiseConv2d(let dconv) = depthwise.operation, reluInputFor[depthwise.name] == nil,
                  Kernels.elementwiseCode(Self.kind(fusedActivation[depthwise.name]?.activation ?? dconv.activation)) != nil,
                  PointwiseDepthwise.fits(convGeometry(dconv.window, depthwise, shapes[depthwise.name]!)) else { continue }
            depthwiseAfter[node.name] = depthwise.name
            absorbed.insert(depthwise.name)
        }
        // The depthwise conv of such a pair whose output only a pointwise Conv2D reads (the block's
        // projection, maybe with its residual Add fused, the residual computed before the pair):
        // the strips are projected as they are made (`PointwiseDepthwise.Projection`).
        func kept(_ name: String) -> Bool {
            !aliasOf.values.contains(name) && !graph.outputs.contains(name) && !observedNames.contains(name)
        }
        var projectionAfter: [String: String] = [:]
        for (position, node) in graph.nodes.enumerated() {
            guard let name = depthwiseAfter[node.name], let depthwise = graph.node(named: name),
                  case .depthwiseConv2d = depthwise.operation, kept(name), case let produced = fusedActivation[name]?.into ?? name,
                  kept(produced), case let readers = graph.consumers(of: produced), readers.count == 1,
                  let projection = graph.node(named: readers[0]), projection.inputs == [produced], case .conv2d(let pconv) = projection.operation,
                  pconv.groups == 1, !absorbed.contains(projection.name), pooledInto[projection.name] == nil,
                  paddingFor[projection.name] == nil, depthwiseAfter[projection.name] == nil else { continue }
            let geometry = convGeometry(pconv.window, projection, shapes[projection.name]!)
            guard Kernels.isPointwise(geometry), geometry.inChannels > 1 else { continue }
            if let residual = residualInto[projection.name] {
                // The residual must exist before the pair's step.
                guard let other = index[aliasOf[residual.other] ?? residual.other], other < position else { continue }
            }
            projectionAfter[name] = projection.name
            absorbed.insert(projection.name)
        }
        // An inverted-residual block on a small map (`InvertedBottleneck.fits`): a pointwise Conv2D
        // (element-wise activation) read only by a DepthwiseConv2D (directly or through a folded zero
        // padding), read only by a pointwise Conv2D (the projection, maybe with its residual Add
        // fused): the three run as one step, in parts of the expansion's channels, so that across
        // threads only the block's narrow output crosses between the cores.
        var bottleneckAfter: [String: (depthwise: String, projection: String)] = [:]
        for (position, node) in graph.nodes.enumerated() {
            // (Not a conv another block took as its projection: MobileNet's chains of 1×1 and depthwise convs.)
            guard case .conv2d(let conv) = node.operation, conv.groups == 1, !absorbed.contains(node.name), pooledInto[node.name] == nil,
                  residualInto[node.name] == nil, paddingFor[node.name] == nil, depthwiseAfter[node.name] == nil, kept(node.name) else { continue }
            let geometry = convGeometry(conv.window, node, shapes[node.name]!)
            let expanded = fusedActivation[node.name]?.into ?? node.name
            guard Kernels.isPointwise(geometry), geometry.inChannels > 1,
                  Kernels.elementwiseCode(Self.kind(fusedActivation[node.name]?.activation ?? conv.activation)) != nil, kept(expanded),
                  let depthwise = depthwiseReader(of: expanded) else { continue }
            let filtered = fusedActivation[depthwise.name]?.into ?? depthwise.name
            guard case .depthwiseConv2d(let dconv) = depthwise.operation, !absorbed.contains(depthwise.name), reluInputFor[depthwise.name] == nil,
                  kept(depthwise.name), kept(filtered), Kernels.elementwiseCode(Self.kind(fusedActivation[depthwise.name]?.activation ?? dconv.activation)) != nil,
                  InvertedBottleneck.fits(convGeometry(dconv.window, depthwise, shapes[depthwise.name]!), multiplier: dconv.depthMultiplier),
                  case let next = graph.consumers(of: filtered), next.count == 1, let projection = graph.node(named: next[0]),
                  projection.inputs == [filtered], case .conv2d(let pconv) = projection.operation, pconv.groups == 1,
                  pooledInto[projection.name] == nil, paddingFor[projection.name] == nil, kept(projection.name),
                  Kernels.isPointwise(convGeometry(pconv.window, projection, shapes[projection.name]!)),
                  InvertedBottleneck.pays(middle: geometry.outChannels, outputs: pconv.outputChannels) else { continue }
            if let residual = residualInto[projection.name] {
                // The residual must exist before the block's first step.
                guard let other = index[aliasOf[residual.other] ?? residual.other], other < position,
                      Kernels.elementwiseCode(Self.kind(fusedActivation[residual.add]?.activation ?? .linear)) != nil else { continue }
            } else {
                guard Kernels.elementwiseCode(Self.kind(fusedActivation[projection.name]?.activation ?? pconv.activation)) != nil else { continue }
            }
            bottleneckAfter[node.name] = (depthwise.name, projection.name)
            absorbed.insert(depthwise.name)
            absorbed.insert(projection.name)
        }
        // Squeeze-and-excitation's product (a two-input Multiply by one value per channel) whose
        // only reader is a pointwise Conv2D run by the prepacked GEMM: the conv scales its rows a
        // chunk at a time as it goes (`ScaledPointwise`), the product's map never written.
        var scaledInput: [String: (features: String, scales: String)] = [:]
        for node in graph.nodes {
            guard case .conv2d(let conv) = node.operation, conv.groups == 1, !absorbed.contains(node.name), pooledInto[node.name] == nil,
                  paddingFor[node.name] == nil, depthwiseAfter[node.name] == nil, bottleneckAfter[node.name] == nil,
                  node.inputs.count == 1, case let product = node.inputs[0], aliasOf[product] == nil, kept(product),
                  !absorbed.contains(product), fusedActivation[product] == nil, graph.consumers(of: product) == [node.name],
                  let multiply = graph.node(named: product), case .multiply = multiply.operation, multiply.inputs.count == 2,
                  case let inShapes = multiply.inputs.map({ shapes[$0]! }), let scaled = Self.channelScale(inShapes, shapes[product]!)
            else { continue }
            let geometry = convGeometry(conv.window, node, shapes[node.name]!)
            guard Kernels.isPointwise(geometry), geometry.inChannels > 1 else { continue }
            scaledInput[node.name] = (multiply.inputs[scaled], multiply.inputs[1 - scaled])
            absorbed.insert(product)
        }
        // A DepthwiseConv2D (element-wise activation) whose output only a pointwise Conv2D run by the
        // prepacked GEMM reads (no residual or other fusion taking it): the two run as one
        // `separable` step, the depthwise output written to scratch a few rows at a time and
        // multiplied from cache (MobileNetV2's first block, 112 × 112 × 32 at 224: 1.6 MB written
        // and read back an image otherwise; MobileNet's depthwise → 1×1 pairs on maps too small
        // for their 1×1 → depthwise pairs to run in strips).
        var pointwiseAfter: [String: String] = [:]
        for node in graph.nodes {
            guard case .depthwiseConv2d(let dconv) = node.operation, !absorbed.contains(node.name), kept(node.name),
                  Kernels.elementwiseCode(Self.kind(fusedActivation[node.name]?.activation ?? dconv.activation)) != nil,
                  case let produced = fusedActivation[node.name]?.into ?? node.name, kept(produced),
                  case let readers = graph.consumers(of: produced), readers.count == 1, let pointwise = graph.node(named: readers[0]),
                  pointwise.inputs == [produced], case .conv2d(let pconv) = pointwise.operation, pconv.groups == 1,
                  !absorbed.contains(pointwise.name), pooledInto[pointwise.name] == nil,
                  paddingFor[pointwise.name] == nil, residualInto[pointwise.name] == nil, depthwiseAfter[pointwise.name] == nil,
                  bottleneckAfter[pointwise.name] == nil, scaledInput[pointwise.name] == nil else { continue }
            let geometry = convGeometry(pconv.window, pointwise, shapes[pointwise.name]!)
            guard Kernels.isPointwise(geometry), geometry.inChannels > 1 else { continue }
            pointwiseAfter[node.name] = pointwise.name
            absorbed.insert(pointwise.name)
        }
        // An upsampling whose only reader turns its map to channels-first (a torchvision segmentation
        // model's last Resize, then the output's NHWC → NCHW): written channels-first as it is made,
        // with no pass of its own for the transpose (`upsampledFor`: the transpose → the upsampling).
        var upsampledFor: [String: Node] = [:]
        for node in graph.nodes {
            guard case .upsampling = node.operation, shapes[node.name]?.count == 3, node.inputs.count == 1,
                  fusedActivation[node.name] == nil, !absorbed.contains(node.name), !graph.outputs.contains(node.name),
                  !observedNames.contains(node.name), !aliasOf.values.contains(node.name), windowFor[node.name] == nil,
                  case let readers = graph.consumers(of: node.name), readers.count == 1, let reader = graph.node(named: readers[0]),
                  reader.inputs == [node.name], case .transpose(let perm) = reader.operation, perm == [2, 0, 1],
                  !absorbed.contains(reader.name), fusedActivation[reader.name] == nil, windowFor[reader.name] == nil else { continue }
            upsampledFor[reader.name] = node
            absorbed.insert(node.name)
        }
        var steps: [Step] = []
        for (i, node) in graph.nodes.enumerated() {
            if absorbed.contains(node.name) { continue }
            if let upsampling = upsampledFor[node.name], case .upsampling(let up) = upsampling.operation,
               let input = shapes[upsampling.inputs[0]] {
                let kind = Kind.upsample(height: input[0], width: input[1], channels: input[2], factorY: up.factors[0], factorX: up.factors[1],
                                         bilinear: up.interpolation == .bilinear, channelsFirst: true)
                steps.append(Step(kind: kind, sources: sources(upsampling), destination: index[node.name]!))
                continue
            }
            let outShape = shapes[node.name]!
            if let chain = windowFor[node.name] {
                steps.append(Step(kind: .window(chain.window, channels: outShape.last!), sources: sources(node), destination: index[node.name]!))
                continue
            }
            let fused = fusedActivation[node.name]
            if case .conv2d(let conv) = node.operation {
                let geometry = convGeometry(conv.window, node, outShape)
                let activation = Self.kind(fused?.activation ?? conv.activation)
                let pooled = pooledInto[node.name]
                let destination = pooled ?? fused?.into ?? node.name
                var special: Kind?
                if pooled != nil ? Kernels.canUseWinograd(geometry, groups: conv.groups, activation: activation)
                    : Kernels.canUseWinograd(geometry, groups: conv.groups) {
                    special = .winograd(transformed: conv.kernel.withUnsafeValues { w in
                                            Kernels.winogradKernel(w.baseAddress!, inChannels: geometry.inChannels,
                                                                   outChannels: geometry.outChannels)
                                        },
                                        bias: conv.bias, geometry: geometry, activation: activation, pool: pooled != nil)
                    conv.kernel.releaseResidency()
                } else if pooled != nil {
                    special = .conv2dMaxPool(kernel: conv.kernel, bias: conv.bias, geometry: geometry, activation: activation)
                }
                if let special {
                    steps.append(Step(kind: special, sources: sources(node), destination: index[destination]!))
                    continue
                }
            }
            let inShapes = node.inputs.map { shapes[$0]! }
            let kind: Kind
            switch node.operation {
            case .input:
                continue
            case .dense(let dense):
                // Over a map (a Dense on the last axis of each pixel: PyTorch's Linear in ConvNeXt,
                // transformers' MLPs) it is a 1×1 conv and packs its panels as one does; on
                // vectors only a large kernel does (smaller ones keep the sparse-input path).
                let overMap = (shapes[node.inputs[0]]?.count ?? 1) >= 2 && dense.inputs > 1
                let panels = dense.kernel.count >= Self.densePanelFloats || overMap
                    ? dense.kernel.withUnsafeValues { Panels($0.baseAddress!, rows: dense.inputs, columns: dense.units) } : nil
                if panels != nil { dense.kernel.releaseResidency() }
                kind = .dense(kernel: dense.kernel, panels: panels, bias: dense.bias,
                              inputs: dense.inputs, units: dense.units, activation: Self.kind(fused?.activation ?? dense.activation))
            case .conv2d(let conv) where conv.groups > 1 && conv.kernel.shape[conv.kernel.shape.count - 2] == 1:
                // One input channel per group (ConvNeXt's 7×7 blocks, grouped 1-D convs): a depthwise
                // convolution, whose kernel layout (kh, kw, in, out/in) is the same memory.
                kind = .depthwise(kernel: conv.kernel, bias: conv.bias, geometry: convGeometry(conv.window, node, outShape),
                                  multiplier: conv.outputChannels / conv.groups, activation: Self.kind(fused?.activation ?? conv.activation),
                                  reluInput: false)
            case .conv2d(let conv) where conv.groups > 1:
                kind = .grouped(GroupedConvolution(kernel: conv.kernel, bias: conv.bias, geometry: convGeometry(conv.window, node, outShape),
                                                   groups: conv.groups, activation: Self.kind(fused?.activation ?? conv.activation)))
            case .conv2d(let conv) where conv.groups == 1 && DilatedConvolution.pays(convGeometry(conv.window, node, outShape))
                && residualInto[node.name] == nil && scaledInput[node.name] == nil:
                // DeepLab's atrous convs on small maps, a TCN's dilated 1-D convs: only the products
                // inside the input. A 1-D one runs down a column, so that threads share its steps.
                kind = .dilated(conv.kernel.withUnsafeValues { w in
                    DilatedConvolution(kernel: w.baseAddress!, bias: conv.bias, geometry: convGeometry(conv.window, node, outShape).alongRows,
                                       activation: Self.kind(fused?.activation ?? conv.activation))
                })
                conv.kernel.releaseResidency()
            case .conv2d(let conv):
                let geometry = convGeometry(conv.window, node, outShape)
                let panels = conv.groups == 1 && geometry.inChannels > 1
                    ? conv.kernel.withUnsafeValues { w in
                        Panels(w.baseAddress!, rows: geometry.kernelHeight * geometry.kernelWidth * geometry.inChannels,
                               columns: geometry.outChannels)
                    } : nil
                // The kernel is read through its panels from now on: a mapped file's copy of it can leave memory.
                if panels != nil { conv.kernel.releaseResidency() }
                if let name = depthwiseAfter[node.name], let panels, let reader = graph.node(named: name),
                   case .depthwiseConv2d(let dconv) = reader.operation {
                    let readerFused = fusedActivation[name]
                    var projection: PointwiseDepthwise.Projection?
                    var destination = readerFused?.into ?? name, residualSource: [Int] = []
                    if let projectionName = projectionAfter[name], let projectionNode = graph.node(named: projectionName),
                       case .conv2d(let pconv) = projectionNode.operation {
                        let units = pconv.outputChannels, middle = convGeometry(dconv.window, reader, shapes[name]!).outChannels
                        let residual = residualInto[projectionName]
                        projection = PointwiseDepthwise.Projection(
                            panels: pconv.kernel.withUnsafeValues { Panels($0.baseAddress!, rows: middle, columns: units) }, bias: pconv.bias,
                            units: units, activation: residual.map { Self.kind(fusedActivation[$0.add]?.activation ?? .linear) }
                                ?? Self.kind(fusedActivation[projectionName]?.activation ?? pconv.activation))
                        pconv.kernel.releaseResidency()
                        destination = residual.map { fusedActivation[$0.add]?.into ?? $0.add } ?? fusedActivation[projectionName]?.into ?? projectionName
                        residualSource = residual.map { [index[aliasOf[$0.other] ?? $0.other]!] } ?? []
                    }
                    let plan = PointwiseDepthwise(
                        inputs: geometry.inChannels, panels: panels, pointwiseBias: conv.bias,
                        pointwiseActivation: Self.kind(fused?.activation ?? conv.activation),
                        depthwise: DepthwiseStage(kernel: dconv.kernel, bias: dconv.bias, multiplier: dconv.depthMultiplier,
                                                  activation: Self.kind(readerFused?.activation ?? dconv.activation), reluInput: false),
                        geometry: convGeometry(dconv.window, reader, shapes[name]!), projection: projection)
                    steps.append(Step(kind: .pointwiseDepthwise(plan), sources: sources(node) + residualSource, destination: index[destination]!))
                    continue
                }
                if let (name, projectionName) = bottleneckAfter[node.name], let panels, let reader = graph.node(named: name),
                   case .depthwiseConv2d(let dconv) = reader.operation, let projection = graph.node(named: projectionName),
                   case .conv2d(let pconv) = projection.operation {
                    let residual = residualInto[projectionName]
                    let last = residual.map { fusedActivation[$0.add]?.into ?? $0.add } ?? fusedActivation[projectionName]?.into ?? projectionName
                    let activation = residual.map { Self.kind(fusedActivation[$0.add]?.activation ?? .linear) }
                        ?? Self.kind(fusedActivation[projectionName]?.activation ?? pconv.activation)
                    let plan = dconv.kernel.withUnsafeValues { dw in
                        pconv.kernel.withUnsafeValues { pw in
                            InvertedBottleneck(
                                inputs: geometry.inChannels, expansion: panels, expansionBias: conv.bias,
                                expansionActivation: Self.kind(fused?.activation ?? conv.activation), depthwise: dw.baseAddress!,
                                depthwiseBias: dconv.bias.map { $0.values }, geometry: convGeometry(dconv.window, reader, shapes[name]!),
                                depthwiseActivation: Self.kind(fusedActivation[name]?.activation ?? dconv.activation), projection: pw.baseAddress!,
                                projectionBias: pconv.bias, outputs: pconv.outputChannels, activation: activation)
                        }
                    }
                    dconv.kernel.releaseResidency()
                    pconv.kernel.releaseResidency()
                    let residualSource = residual.map { [index[aliasOf[$0.other] ?? $0.other]!] } ?? []
                    steps.append(Step(kind: .invertedBottleneck(plan), sources: sources(node) + residualSource, destination: index[last]!))
                    continue
                }
                if let (features, scales) = scaledInput[node.name], let panels {
                    // The channel scale fused in: sources the features, the scales (and the residual).
                    let residual = residualInto[node.name]
                    let activation = residual.map { Self.kind(fusedActivation[$0.add]?.activation ?? .linear) }
                        ?? Self.kind(fused?.activation ?? conv.activation)
                    let last = residual.map { fusedActivation[$0.add]?.into ?? $0.add } ?? fused?.into ?? node.name
                    let read = [features, scales] + (residual.map { [$0.other] } ?? [])
                    steps.append(Step(kind: .scaledPointwise(ScaledPointwise(panels: panels, bias: conv.bias, geometry: geometry,
                                                                             activation: activation)),
                                      sources: read.map { index[aliasOf[$0] ?? $0]! }, destination: index[last]!))
                    continue
                }
                if let residual = residualInto[node.name], panels != nil {
                    // The Add (and its activation) fused in: the residual is the step's second source.
                    // The GEMM's tiles read each residual value as they store the output value in its
                    // place, so the output may go into the residual's buffer (unless the conv reads it).
                    let addFused = fusedActivation[residual.add]
                    let shortcut = index[aliasOf[residual.other] ?? residual.other]!
                    steps.append(Step(kind: .conv2d(kernel: conv.kernel, panels: panels, bias: conv.bias, geometry: geometry, groups: 1,
                                                    activation: Self.kind(addFused?.activation ?? .linear)),
                                      sources: sources(node) + [shortcut], destination: index[addFused?.into ?? residual.add]!,
                                      overwrites: shortcut))
                    continue
                }
                kind = .conv2d(kernel: conv.kernel, panels: panels, bias: conv.bias, geometry: geometry, groups: conv.groups,
                               activation: Self.kind(fused?.activation ?? conv.activation))
            case .separableConv2d(let conv):
                let middle = (outShape.count == 2 ? [1] + outShape : outShape).dropLast() + [conv.inputChannels * conv.depthMultiplier]
                let channels = conv.inputChannels * conv.depthMultiplier
                let panels = channels > 1
                    ? conv.pointwiseKernel.withUnsafeValues { Panels($0.baseAddress!, rows: channels, columns: conv.outputChannels) } : nil
                if panels != nil { conv.pointwiseKernel.releaseResidency() }
                let stage = DepthwiseStage(kernel: conv.depthwiseKernel, bias: nil, multiplier: conv.depthMultiplier, activation: .linear,
                                           reluInput: reluInputFor[node.name] != nil)
                kind = .separable(depthwise: stage, pointwise: conv.pointwiseKernel, panels: panels, bias: conv.bias,
                                  geometry: convGeometry(conv.window, node, Array(middle)), units: conv.outputChannels,
                                  activation: Self.kind(fused?.activation ?? conv.activation))
            case .conv2dTranspose(let conv):
                let input = inShapes[0]
                let geometry = Kernels.Spatial(
                    inHeight: input[0], inWidth: input[1], inChannels: input[2], outHeight: outShape[0], outWidth: outShape[1],
                    outChannels: outShape[2], kernelHeight: conv.size[0], kernelWidth: conv.size[1], strideY: conv.strides[0],
                    strideX: conv.strides[1], dilationY: 1, dilationX: 1,
                    padTop: conv.output(axis: 0, input: input[0]).padBefore, padLeft: conv.output(axis: 1, input: input[1]).padBefore)
                kind = .transposedConv(TransposedConvolution(kernel: conv.kernel.values, bias: conv.bias, geometry: geometry,
                                                             activation: Self.kind(fused?.activation ?? conv.activation)))
            case .layerNorm(let ln):
                let shape = inShapes[0]
                let trailing = Array((shape.count - ln.axes.count)..<shape.count)
                if ln.axes == trailing {
                    kind = .layerNormTrailing(inner: ln.axes.map { shape[$0] }.reduce(1, *), gamma: ln.gamma, beta: ln.beta, epsilon: ln.epsilon)
                } else {
                    let (group, parameter, groups) = Self.layerNormIndex(shape: shape, axes: ln.axes)
                    kind = .layerNormIndexed(group: group, parameter: parameter, groups: groups, sampleSize: shape.reduce(1, *),
                                             gamma: ln.gamma, beta: ln.beta, epsilon: ln.epsilon)
                }
            case .upsampling(let up):
                let input = inShapes[0].count == 2 ? [1] + inShapes[0] : inShapes[0]
                kind = .upsample(height: input[0], width: input[1], channels: input[2], factorY: up.factors[0], factorX: up.factors[1],
                                 bilinear: up.interpolation == .bilinear, channelsFirst: false)
            case .cropping2d(let crops):
                let input = inShapes[0].count == 2 ? [1] + inShapes[0] : inShapes[0]
                kind = .crop(height: input[0], width: input[1], channels: input[2], top: crops[0], left: crops[2],
                             outHeight: input[0] - crops[0] - crops[1], outWidth: input[1] - crops[2] - crops[3])
            case .merge(let merge):
                let operation: MergeOperation = switch merge {
                case .subtract: .subtract
                case .maximum: .maximum
                case .minimum: .minimum
                case .average: .average
                }
                kind = .merge(operation, inputs: inShapes, output: outShape)
            case .depthwiseConv2d(let conv) where pointwiseAfter[node.name] != nil:
                let name = pointwiseAfter[node.name]!, pointwise = graph.node(named: name)!
                guard case .conv2d(let pconv) = pointwise.operation else { continue }
                let geometry = convGeometry(pconv.window, pointwise, shapes[name]!)
                let panels = pconv.kernel.withUnsafeValues { Panels($0.baseAddress!, rows: geometry.inChannels, columns: geometry.outChannels) }
                pconv.kernel.releaseResidency()
                let stage = DepthwiseStage(kernel: conv.kernel, bias: conv.bias, multiplier: conv.depthMultiplier,
                                           activation: Self.kind(fused?.activation ?? conv.activation), reluInput: reluInputFor[node.name] != nil)
                steps.append(Step(kind: .separable(depthwise: stage, pointwise: pconv.kernel, panels: panels, bias: pconv.bias,
                                                   geometry: convGeometry(conv.window, node, outShape), units: geometry.outChannels,
                                                   activation: Self.kind(fusedActivation[name]?.activation ?? pconv.activation)),
                                  sources: sources(node), destination: index[fusedActivation[name]?.into ?? name]!))
                continue
            case .depthwiseConv2d(let conv):
                kind = .depthwise(kernel: conv.kernel, bias: conv.bias,
                                  geometry: convGeometry(conv.window, node, outShape), multiplier: conv.depthMultiplier,
                                  activation: Self.kind(fused?.activation ?? conv.activation), reluInput: reluInputFor[node.name] != nil)
            case .pool2d(let pool):
                kind = .pool(geometry: convGeometry(pool.window, node, outShape), isMax: pool.kind == .max)
            case .globalPool(let poolKind, _):
                let channels = inShapes[0].last!
                kind = .globalPool(pixels: inShapes[0].reduce(1, *) / max(channels, 1), channels: channels, isMax: poolKind == .max)
            case .zeroPadding2d(let pads):
                let input = inShapes[0].count == 2 ? [1] + inShapes[0] : inShapes[0]
                let output = outShape.count == 2 ? [1] + outShape : outShape
                kind = .zeroPad(height: input[0], width: input[1], channels: input[2],
                                top: pads[0], left: pads[2], outHeight: output[0], outWidth: output[1], value: 0)
            case .pad2d(let pads, let value):
                let input = inShapes[0].count == 2 ? [1] + inShapes[0] : inShapes[0]
                let output = outShape.count == 2 ? [1] + outShape : outShape
                kind = .zeroPad(height: input[0], width: input[1], channels: input[2],
                                top: pads[0], left: pads[2], outHeight: output[0], outWidth: output[1], value: value)
            case .transpose(let perm):
                kind = .transpose(input: inShapes[0], perm: perm)
            case .batchNorm(let bn) where batchNormStatistics == .batch:
                kind = .batchNormFromBatch(gamma: bn.gamma.map { $0.values.map(Double.init) }, beta: bn.beta.map { $0.values.map(Double.init) },
                                           epsilon: bn.epsilon, channels: bn.channels)
            case .batchNorm(let bn):
                let coefficients: (scale: [Double], shift: [Double])
                do { coefficients = try bn.affineCoefficients() } catch let error as ModelError {
                    throw RuntimeError.unsupported(node: node.name, detail: "\(error)")
                }
                kind = .affine(scale: coefficients.scale.map { Float($0) }, shift: coefficients.shift.map { Float($0) }, channels: bn.channels,
                               activation: Self.kind(fused?.activation ?? .linear))
            case .affine(let affine):
                kind = .affine(scale: affine.scale.values, shift: affine.shift.values, channels: affine.channels,
                               activation: Self.kind(fused?.activation ?? .linear))
            case .activation(let activation):
                kind = .activation(Self.kind(activation), channels: outShape.last ?? 1)
            case .add where inShapes.contains(where: { $0 != outShape }):
                kind = .broadcast(isAdd: true, inputs: inShapes, output: outShape)
            case .multiply where inShapes.count == 2 && Self.channelScale(inShapes, outShape) != nil:
                kind = .scaleChannels(scaled: Self.channelScale(inShapes, outShape)!, pixels: outShape.dropLast().reduce(1, *),
                                      channels: outShape.last!)
            case .multiply where inShapes.contains(where: { $0 != outShape }):
                kind = .broadcast(isAdd: false, inputs: inShapes, output: outShape)
            case .add where inShapes.count == 2:
                kind = .add(activation: Self.kind(fused?.activation ?? .linear), channels: outShape.last ?? 1)
            case .add:
                kind = .add(activation: .linear, channels: outShape.last ?? 1)
            case .multiply:
                kind = .multiply
            case .concatenate(let axis):
                let outer = outShape[..<axis].reduce(1, *)
                kind = .concatenate(outer: outer, chunks: inShapes.map { $0[axis...].reduce(1, *) },
                                    activation: Self.kind(activatedConcatenation[node.name] ?? .linear))
            case .slice(let axis, let start, let end):
                let shape = inShapes[0], inner = shape[(axis + 1)...].reduce(1, *)
                kind = .slice(outer: shape[..<axis].reduce(1, *), size: shape[axis] * inner, start: start * inner, count: (end - start) * inner)
            case .flatten, .reshape, .identity:
                kind = .copy
            }
            steps.append(Step(kind: kind, sources: sources(node), destination: fused.map { index[$0.into]! } ?? i))
        }
        self.steps = steps
        self.batchNormStatistics = batchNormStatistics
        self.observed = observed
        self.observedAfterStep = steps.map { observed[$0.destination] }
        self.chainEnds = Self.bottleneckChains(steps, observed: observedAfterStep)
        self.nodeCount = graph.nodes.count
        self.nodeNames = graph.nodes.map(\.name)
        self.sizes = graph.nodes.map { shapes[$0.name]!.reduce(1, *) }
        (self.bufferOfNode, self.bufferSizes) = Self.planMemory(steps: steps.map { ($0.sources, $0.destination, $0.overwrites) }, sizes: sizes,
                                                                 external: [index[input.name]!, index[graph.outputs[0]]!])
        self.inputShape = shapes[input.name]!
        self.outputShape = shapes[graph.outputs[0]]!
        self.inputSize = inputShape.reduce(1, *)
        self.outputSize = outputShape.reduce(1, *)
        self.inputIndex = index[input.name]!
        self.outputIndex = index[graph.outputs[0]]!
        // Only buffers steps write count (a conv output pooled as it is computed never exists).
        let nodeSizes = sizes, written = Set(steps.map(\.destination) + [index[input.name]!])
        let largest = max(written.map { nodeSizes[$0] }.max() ?? 1, 1)
        self.samplesPerTile = Self.samplesPerTile(
            largest: largest, steps: steps.map { (Self.multiplyAdds($0.kind, outputSize: nodeSizes[$0.destination]), Self.gemmRows($0.kind, outputSize: nodeSizes[$0.destination])) })
        // Splitting one sample's steps pays only when they are large enough to outweigh a
        // hand-over per step (the seed MLP runs a sample faster alone): large activations, or
        // enough multiply-adds (MNIST's bigger CNN: small maps, 20 M multiply-adds per image).
        let work = steps.reduce(0) { $0 + Self.multiplyAdds($1.kind, outputSize: nodeSizes[$1.destination]) }
        self.splitsSamples = largest >= Self.smallestSplitSample || work >= Self.smallestSplitWork
        self.headStart = Self.headStart(steps: steps, sizes: nodeSizes, observed: steps.map { observed[$0.destination] },
                                        external: index[input.name]!)
    }

    /// `chainEnds`: at each step, the end of the run of two or more consecutive bottleneck steps
    /// starting there (the step's own position when none does), cut after an observed step.
    private static func bottleneckChains(_ steps: [Step], observed: [Int?]) -> [Int] {
        var ends = Array(steps.indices)
        var position = 0
        while position < steps.count {
            var end = position
            while end < steps.count, case .invertedBottleneck = steps[end].kind {
                end += 1
                if observed[end - 1] != nil { break }
            }
            if end - position >= 2 { ends[position] = end }
            position = max(end, position + 1)
        }
        return ends
    }

    /// The last steps when they are a classifier head over a narrow map: Dense layers and activations
    /// reading only each other and one node written before them (at most 16K floats a sample: a
    /// pooled 2048), with at least `densePanelFloats` of weights (MobileNetV2's 1280 × 1000 is 5 MB;
    /// run per tile of 2 images at 224×224 it streamed 8 times a batch of 16: 2.8 against
    /// OpenVINO's 0.81 ms a batch, AMD Zen 3), none of them observed. Nil otherwise.
    private static func headStart(steps: [Step], sizes: [Int], observed: [Int?], external input: Int) -> Int? {
        var start = steps.count, weights = 0
        scan: while start > 0 {
            switch steps[start - 1].kind {
            case let .dense(_, _, _, inputs, units, _): weights += inputs * units
            case .activation: break
            default: break scan
            }
            start -= 1
        }
        guard start > 0, start < steps.count, weights >= densePanelFloats, steps[start].sources.count == 1 else { return nil }
        let boundary = steps[start].sources[0], written = Set(steps[start...].map(\.destination))
        guard boundary != input, sizes[boundary] <= 16384, steps[..<start].contains(where: { $0.destination == boundary }),
              steps[start...].allSatisfy({ $0.sources.allSatisfy { $0 == boundary || written.contains($0) } }),
              observed[start...].allSatisfy({ $0 == nil }) else { return nil }
        return start
    }

    /// See `samplesPerTile`. Small maps (8 or more samples' largest in 1 MiB): as many samples as
    /// that, up to 256. Larger: a tile of T samples streams the weights W (floats) once per T
    /// samples but spills T maps of A floats out of L2: the tile minimizing W / T + A · T,
    /// T = √(W / A), between 1 and 8 (ResNet50 at 224×224, 25 M weights and 0.8 M-float maps: 6;
    /// at 96×96, 0.15 M: 8; MobileNetV2 and EfficientNetB0 224, 3.5 and 5 M weights, 0.4 and
    /// 0.45 M-float maps: 3), and enough samples for 32 GEMM rows in the steps doing the work.
    /// Measured at batch 16 with tiles of 8: MobileNetV2 224 ran slower per image than at batch 1
    /// (117 vs 156 img/s on one thread), ResNet50 about the same. A largest map of 128 KiB to 1 MiB a sample
    /// takes at least as many samples as keep the tile's within 4 MiB (4 to 8; it took 8 always
    /// before): tiles of 8 put 6.4 MB maps through every step at 160×160 (an 80×80×32 map, 0.8 MB
    /// a sample), its memory-bound steps (concatenations, pooling, padding, additions) reading them
    /// from L3. Batch 16, alternating runs, AMD Zen 4, tiles of 8 → 5: NASNetMobile 160 one thread
    /// 108 → 122–127 img/s, two 246 → 260; MobileNet 160 155–165 → 173, two threads 295 → 314
    /// (tiles of 4 alike); MobileNetV2 and EfficientNetB0 96 (0.3 MB) keep 8, faster there than
    /// 4 or 2, and ResNet50 96 keeps 8 by its weights (two threads: 200 img/s, 195 with 7).
    private static func samplesPerTile(largest: Int, steps: [(multiplyAdds: Int, rows: Int?)]) -> Int {
        let byMemory = (1 << 18) / largest
        if byMemory >= 8 { return min(256, byMemory) }
        // Samples for 32 GEMM rows in the steps doing at least 5% of the work, if any does (in
        // a deep network none may: no such floor then).
        let total = steps.reduce(0) { $0 + $1.multiplyAdds }
        let forRows = steps.filter { $0.multiplyAdds * 20 >= total }.compactMap(\.rows).min().map { (32 + $0 - 1) / max($0, 1) } ?? 1
        let weights = steps.reduce(0) { sum, step in sum + (step.rows.map { $0 > 0 ? step.multiplyAdds / $0 : 0 } ?? 0) }
        let balance = Int((Double(weights) / Double(largest)).squareRoot().rounded())
        // From 128 KiB to 1 MiB a sample, at least as many as keep the tile's largest map within 4 MiB.
        let inBudget = byMemory > 0 ? (1 << 20) / largest : 1
        return min(8, max(1, balance, forRows, inBudget))
    }

    /// GEMM rows per sample of a step whose weights each row reuses (nil: no such product).
    private static func gemmRows(_ kind: Kind, outputSize: Int) -> Int? {
        switch kind {
        case let .dense(_, _, _, _, units, _): units > 0 ? outputSize / units : nil
        case let .conv2d(_, _, _, g, _, _), let .conv2dMaxPool(_, _, g, _), let .winograd(_, _, g, _, _): g.outHeight * g.outWidth
        case let .separable(_, _, _, _, g, _, _): g.outHeight * g.outWidth
        case let .pointwiseDepthwise(p): p.geometry.inHeight * p.geometry.inWidth
        case let .scaledPointwise(p): p.pixels
        case let .invertedBottleneck(p): p.geometry.inHeight * p.geometry.inWidth
        case let .grouped(conv): conv.geometry.outHeight * conv.geometry.outWidth
        default: nil
        }
    }

    /// Dense kernels from this many floats (4 MiB: classifier heads such as 2048 × 1000) are
    /// prepacked into panels: read from memory at every small batch, a row-major kernel walked
    /// column block by column block streamed at 7–11 GB/s, the panels at 11–16 (1–4 rows,
    /// 1280 and 2048 inputs × 1000, AVX-512 and AVX2, on the Xeon of docs/PERFORMANCE.md).
    /// Smaller kernels keep the sparse-input path (MNIST's MLPs).
    static let densePanelFloats = 1 << 20

    /// The smallest map (floats per sample) a pointwise conv and its depthwise reader go in strips
    /// for: 256 KiB, a quarter of the L2 of the AMD Zen 4 measured. Each step runs over a tile of
    /// samples (`samplesPerTile`: 8 or more where a sample's maps are under 1 MiB), so such a map is
    /// 2 MiB or more a step, written to L3 and read back: MobileNetV2 96's first blocks (48×48×96
    /// and 24×24×144 expansions, 221K and 83K floats an image), batch 16, one thread, from 1 MiB:
    /// 0.43–0.51 → 0.35 ms an image and the network 707–755 → 811–830 img/s (profiles, two
    /// alternating runs); best passes of alternating runs 0.98–1.16× at AVX-512 (ten rounds), 1.03–
    /// 1.07× at AVX2 (six); batch 1 1.00–1.06× (profiles); EfficientNetB0 96 0.99–1.03× at batch 1
    /// and 16; torchvision's MnasNet and MobileNetV3-Large 96 0.98–1.02×. 16K floats: within 1%.
    static let smallestStripedMap = 1 << 16

    /// Multiply-adds per sample from which a sample's steps are split even with small activations.
    static let smallestSplitWork = 4_000_000

    /// Multiply-adds of one sample of a step (its convolutions and products; 0 for the rest).
    private static func multiplyAdds(_ kind: Kind, outputSize: Int) -> Int {
        switch kind {
        case let .dense(_, _, _, inputs, _, _): outputSize * inputs
        case let .conv2d(_, _, _, g, groups, _): outputSize * g.kernelHeight * g.kernelWidth * g.inChannels / max(groups, 1)
        case let .conv2dMaxPool(_, _, g, _): g.outHeight * g.outWidth * g.outChannels * g.kernelHeight * g.kernelWidth * g.inChannels
        case let .winograd(_, _, g, _, _): g.outHeight * g.outWidth * g.outChannels * 9 * g.inChannels
        case let .depthwise(_, _, g, _, _, _): outputSize * g.kernelHeight * g.kernelWidth
        case let .grouped(conv): outputSize * conv.geometry.kernelHeight * conv.geometry.kernelWidth * conv.geometry.inChannels / conv.groups
        case let .transposedConv(conv): conv.multiplyAdds
        case let .dilated(conv): conv.multiplyAdds
        case let .separable(depthwise, _, _, _, g, units, _):
            g.outHeight * g.outWidth * g.inChannels * depthwise.multiplier * (g.kernelHeight * g.kernelWidth + units)
        case let .pointwiseDepthwise(p):
            p.geometry.inHeight * p.geometry.inWidth * p.inputs * p.geometry.inChannels
                + p.geometry.outHeight * p.geometry.outWidth * p.geometry.outChannels * (p.geometry.kernelHeight * p.geometry.kernelWidth + (p.projection?.units ?? 0))
        case let .scaledPointwise(p): outputSize * p.inputs
        case let .invertedBottleneck(p):
            p.geometry.inHeight * p.geometry.inWidth * p.inputs * p.geometry.inChannels
                + p.geometry.outHeight * p.geometry.outWidth * p.geometry.inChannels * (p.geometry.kernelHeight * p.geometry.kernelWidth + p.outputs)
        default: 0
        }
    }

    /// Which of two inputs is a feature map the other scales channel by channel (the other's
    /// shape all ones but the channel axis), if so.
    private static func channelScale(_ shapes: [[Int]], _ output: [Int]) -> Int? {
        guard output.count >= 2, let channels = output.last else { return nil }
        for scaled in 0..<2 {
            let other = shapes[1 - scaled]
            if shapes[scaled] == output, other.count == output.count, other.last == channels,
               other.dropLast().allSatisfy({ $0 == 1 }) { return scaled }
        }
        return nil
    }

    /// The statistics group and parameter index of each element of a sample of `shape` when
    /// normalizing over `axes` (row-major over the other axes and over `axes` respectively).
    private static func layerNormIndex(shape: [Int], axes: [Int]) -> (group: [Int32], parameter: [Int32], groups: Int) {
        let size = shape.reduce(1, *)
        let normalized = Set(axes)
        var group = [Int32](repeating: 0, count: size), parameter = [Int32](repeating: 0, count: size)
        var coordinate = [Int](repeating: 0, count: shape.count)
        for e in 0..<size {
            var g = 0, p = 0
            for d in 0..<shape.count {
                if normalized.contains(d) { p = p * shape[d] + coordinate[d] } else { g = g * shape[d] + coordinate[d] }
            }
            group[e] = Int32(g)
            parameter[e] = Int32(p)
            var d = shape.count - 1
            while d >= 0 {
                coordinate[d] += 1
                if coordinate[d] < shape[d] { break }
                coordinate[d] = 0
                d -= 1
            }
        }
        let groups = size / max(axes.map { shape[$0] }.reduce(1, *), 1)
        return (group, parameter, groups)
    }

    /// Window geometry; a (steps, channels) shape is a height-1 image.
    /// Plans activation buffers by liveness: a node's values live from the step that writes
    /// them to the last step that reads them; a buffer whose node is no longer read is
    /// reused (the smallest free one that fits, else the largest free one grown) for a later
    /// node. A step never writes into a buffer it reads, but for the source it `overwrites`:
    /// when that source is read by no later step, by no other of the step's sources, and the
    /// step is the only one writing its output, the output takes the source's buffer (a
    /// residual added in a 1×1 conv's GEMM: its output then replaces the residual in cache
    /// instead of being fetched beside it; ResNet50's 56×56×256 and 28×28×512 ones, hot, on
    /// one core: 176 → 199 and 177 → 216 GFLOP/s, Intel Xeon family 6 model 207).
    /// `external` nodes (the input and the output, which live in the caller's memory) get
    /// none. Returns each node's buffer and the buffers' sizes in floats per sample.
    static func planMemory(steps: [(sources: [Int], destination: Int, overwrites: Int?)], sizes: [Int],
                           external: Set<Int>) -> (buffer: [Int?], sizes: [Int]) {
        var lastRead = [Int](repeating: -1, count: sizes.count)
        var writers = [Int](repeating: 0, count: sizes.count)
        for (position, step) in steps.enumerated() {
            for source in step.sources { lastRead[source] = position }
            writers[step.destination] += 1
        }
        var buffer = [Int?](repeating: nil, count: sizes.count)
        var bufferSizes: [Int] = []
        var holder: [Int?] = []  // the node each buffer holds now
        for (position, step) in steps.enumerated() {
            let node = step.destination
            guard !external.contains(node), buffer[node] == nil else { continue }
            if let source = step.overwrites, !external.contains(source), let held = buffer[source], holder[held] == source,
               lastRead[source] == position, step.sources.filter({ $0 == source }).count == 1, writers[node] == 1,
               bufferSizes[held] >= sizes[node] {
                holder[held] = node
                buffer[node] = held
                continue
            }
            // Free: buffers whose node is read by no step from this one on.
            let free = holder.indices.filter { b in holder[b].map { lastRead[$0] < position } ?? true }
            let need = sizes[node]
            let chosen: Int
            if let fit = free.filter({ bufferSizes[$0] >= need }).min(by: { bufferSizes[$0] < bufferSizes[$1] }) {
                chosen = fit
            } else if let largest = free.max(by: { bufferSizes[$0] < bufferSizes[$1] }) {
                chosen = largest
                bufferSizes[largest] = need
            } else {
                chosen = bufferSizes.count
                bufferSizes.append(need)
                holder.append(nil)
            }
            holder[chosen] = node
            buffer[node] = chosen
        }
        return (buffer, bufferSizes)
    }

    /// Floats per sample the planned activation buffers hold (what liveness planning saves
    /// against one buffer per node), and the plain sum of every written node's size.
    package var plannedFloatsPerSample: (planned: Int, unplanned: Int) {
        let written = Set(steps.map(\.destination)).subtracting([inputIndex, outputIndex])
        return (bufferSizes.reduce(0, +), written.reduce(0) { $0 + sizes[$1] })
    }

    private static func geometry(_ window: Window, _ input: [Int], _ output: [Int]) -> Kernels.Spatial {
        let input = input.count == 2 ? [1] + input : input, output = output.count == 2 ? [1] + output : output
        return Kernels.Spatial(
            inHeight: input[0], inWidth: input[1], inChannels: input[2],
            outHeight: output[0], outWidth: output[1], outChannels: output[2],
            kernelHeight: window.size[0], kernelWidth: window.size[1],
            strideY: window.strides[0], strideX: window.strides[1],
            dilationY: window.dilation[0], dilationX: window.dilation[1],
            padTop: window.output(axis: 0, input: input[0]).padBefore,
            padLeft: window.output(axis: 1, input: input[1]).padBefore)
    }

    private static func kind(_ activation: Activation) -> ActivationKind {
        switch activation {
        case .linear: .linear
        case .relu: .relu
        case .relu6: .relu6
        case .sigmoid: .sigmoid
        case .tanh: .tanh
        case .softmax: .softmax
        case .selu: .selu
        case .swish: .swish
        case .softplus: .softplus
        case .softsign: .softsign
        case .exponential: .exponential
        case .gelu(let approximate): approximate ? .geluTanh : .gelu
        case .hardSigmoid(let slope): .hardSigmoid(slope: slope)
        case .hardSwish: .hardSwish
        case .erf: .erf
        case .elu(let alpha): .elu(alpha: alpha)
        case .leakyRelu(let alpha): .leakyRelu(alpha: alpha)
        case let .clippedRelu(maxValue, negativeSlope, threshold):
            .clippedRelu(maxValue: maxValue ?? .infinity, negativeSlope: negativeSlope, threshold: threshold)
        }
    }

    /// Runs the model on `input.count / inputSize` samples laid out one after
    /// another and returns their outputs, `outputSize` values each. With
    /// `threads` > 1 the batch is split into that many parts run in parallel.
    public func run(_ input: [Float], threads: Int = 1, observer: ExecutionObserver? = nil) throws -> [Float] {
        guard inputSize > 0, input.count % inputSize == 0 else {
            throw RuntimeError.badInputSize(expected: inputSize, found: input.count)
        }
        var output = [Float](repeating: 0, count: input.count / inputSize * outputSize)
        try input.withUnsafeBufferPointer { x in
            try output.withUnsafeMutableBufferPointer { y in try run(x, into: y, threads: threads, observer: observer) }
        }
        return output
    }

    /// Runs the model on the samples in `input` and writes their outputs to the start
    /// of `output`, which must hold `input.count / inputSize * outputSize` values (no
    /// allocation per call once the buffers are planned). With `BatchNormStatistics.batch`
    /// the whole input is one batch, run by one worker. `observer` receives the observed
    /// nodes' values.
    public func run(_ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<Float>, threads: Int = 1,
                    observer: ExecutionObserver? = nil) throws {
        guard inputSize > 0, input.count % inputSize == 0 else {
            throw RuntimeError.badInputSize(expected: inputSize, found: input.count)
        }
        let batch = input.count / inputSize
        precondition(output.count >= batch * outputSize, "output buffer too small")
        if batch == 0 { return }
        // The activation buffers are per executor: concurrent calls take turns.
        runLock.lock()
        defer { runLock.unlock() }
        // Tiles of at most `samplesPerTile`, as many on each worker.
        let threads = batchNormStatistics == .batch ? 1 : max(threads, 1)
        let tileSize = batchNormStatistics == .batch ? batch : samplesPerTile
        let rounds = (batch + threads * tileSize - 1) / (threads * tileSize)
        let tile = max(1, (batch + threads * rounds - 1) / (threads * rounds))
        let tiles = (batch + tile - 1) / tile
        let workers = max(1, min(threads, tiles))
        if threads > 1, tiles < threads, splitsSamples {
            // Fewer tiles than threads (one image on two threads): the tiles run one after
            // another, each step split across all the workers.
            let parallel = StepParallelism(pool: pool(threads))
            for t in 0..<tiles {
                let start = t * tile, end = min(batch, start + tile)
                runPart(input.baseAddress! + start * inputSize, output.baseAddress! + start * outputSize, batch: end - start, worker: 0,
                        observer: observer, parallel: parallel)
            }
            return
        }
        // With a classifier head and several tiles, the tiles stop before the head and leave its
        // input in a buffer of the whole batch; the head then runs once (split across the threads).
        let head = tiles > 1 ? headStart : nil
        let headMemory = head.map { headBuffers(from: $0, batch: batch) }
        let boundary = head.map { steps[$0].sources[0] } ?? 0, boundarySize = sizes[boundary]
        // Each tile reads and writes its own rows; the addresses travel as integers.
        let xAddress = Int(bitPattern: input.baseAddress!), yAddress = Int(bitPattern: output.baseAddress!)
        let boundaryAddress = Int(bitPattern: headMemory?[boundary])
        let inputSize = self.inputSize, outputSize = self.outputSize
        // Samples of real work (those whose steps are split when one runs alone) go in tiles
        // claimed as workers come free (`TileQueue`). Small samples keep fixed shares: the seed MLP
        // at batch 64 on two threads, claimed in tiles of 16 down to 3 samples (a few µs each), ran
        // 611K img/s against 940K in fixed shares (AMD Zen 3). A run with an observer keeps them
        // too, so what each worker observes (and the sums callers make of it) is the same from run
        // to run.
        let queue = workers > 1 && splitsSamples && observer == nil ? TileQueue(batch: batch, workers: workers, most: tile) : nil
        let work: @Sendable (Int) -> Void = { worker in
            guard let xBase = UnsafePointer<Float>(bitPattern: xAddress),
                  let yBase = UnsafeMutablePointer<Float>(bitPattern: yAddress) else { return }
            let handOff = UnsafeMutablePointer<Float>(bitPattern: boundaryAddress)
            var own = queue == nil ? Self.tiles(worker: worker, of: workers, batch: batch, most: tile)[...] : []
            while let samples = queue.map({ $0.claim() }) ?? own.popFirst() {
                let start = samples.lowerBound, end = samples.upperBound
                self.runPart(xBase + start * inputSize, yBase + start * outputSize, batch: end - start, worker: worker, observer: observer,
                             handOff: handOff.map { (boundary, $0 + start * boundarySize) })
            }
        }
        if workers == 1 { work(0) } else { self.pool(threads).run { worker in if worker < workers { work(worker) } } }
        if let head, let headMemory {
            runHead(from: head, buffers: headMemory, output: output.baseAddress!, batch: batch, threads: threads)
        }
    }

    /// The tiles worker `worker` of `workers` runs, in order: its share of the batch (the batch split
    /// as evenly as the workers go) in tiles of at most `most` samples, as even as they go. Tiles of
    /// `most` from the start of the batch, dealt in turn, left MobileNetV2 224 at batch 16 on two
    /// threads (tiles of 3) one worker 9 samples and the other 7: 215 -> 224 img/s, AMD Zen 3,
    /// medians of 8 alternating runs.
    package static func tiles(worker: Int, of workers: Int, batch: Int, most: Int) -> [Range<Int>] {
        let samples = StepParallelism.range(part: worker, of: workers, count: batch), most = max(most, 1)
        let count = (samples.count + most - 1) / most
        return (0..<count).map { t in
            let part = StepParallelism.range(part: t, of: count, count: samples.count)
            return samples.lowerBound + part.lowerBound..<samples.lowerBound + part.upperBound
        }
    }

    /// Buffers of the whole batch for the head's input and its steps' outputs (but the model's),
    /// kept and grown across calls.
    private var headArena: (batch: Int, buffers: [Int: UnsafeMutablePointer<Float>]) = (0, [:])

    private func headBuffers(from start: Int, batch: Int) -> [Int: UnsafeMutablePointer<Float>] {
        if headArena.batch >= batch { return headArena.buffers }
        headArena.buffers.values.forEach(FloatMemory.release)
        let nodes = Set([steps[start].sources[0]] + steps[start...].map(\.destination)).subtracting([outputIndex])
        headArena = (batch, Dictionary(uniqueKeysWithValues: nodes.map { ($0, Arena.allocateAligned(sizes[$0] * batch)) }))
        return headArena.buffers
    }

    /// The head's steps over the whole batch (its input already in `buffers`), split across the
    /// threads as one image's steps are (a Dense by rows, or by columns when the rows are few).
    private func runHead(from start: Int, buffers: [Int: UnsafeMutablePointer<Float>], output: UnsafeMutablePointer<Float>,
                         batch: Int, threads: Int) {
        let parallel = threads > 1 ? StepParallelism(pool: pool(threads)) : .serial
        let arenas = (0..<parallel.workers).map { arena(worker: $0, batch: 0) }
        let timing = profiling
        for position in start..<steps.count {
            let started = timing ? StepTiming(parallel.pool) : nil
            let step = steps[position]
            let destination = step.destination == outputIndex ? output : buffers[step.destination]!
            runStep(step, step.sources.map { UnsafePointer(buffers[$0]!) }, destination, batch: batch, parallel: parallel, arenas: arenas,
                    arena: arenas[0])
            if let started { record(started, position: position) }
        }
    }

    /// A step's start, for the profile: the clock and the pool's job times then.
    private struct StepTiming {
        let pool: WorkerPool?
        let nanoseconds = DispatchTime.now().uptimeNanoseconds
        let jobs: (waited: UInt64, othersBusy: UInt64)?

        init(_ pool: WorkerPool?) {
            self.pool = pool
            jobs = pool.map(\.times)
        }
    }

    /// Adds the step at `position` started at `started` to the profile.
    private func record(_ started: StepTiming, position: Int) {
        stepNanoseconds[position] += DispatchTime.now().uptimeNanoseconds - started.nanoseconds
        if let pool = started.pool, let before = started.jobs {
            let after = pool.times
            var split = stepSplits[position] ?? (0, 0, pool.count)
            split.waited += after.waited - before.waited
            split.othersBusy += after.othersBusy - before.othersBusy
            stepSplits[position] = split
        }
    }

    /// A step of `stepProfile`.
    public typealias StepTime = (layer: String, operation: String, seconds: Double, waited: Double?, othersBusy: Double?)

    /// While set, worker 0 adds the time of each step it runs to `stepProfile`, and the pool times
    /// the steps it splits (set it between runs).
    public var profiling = false {
        didSet {
            stepNanoseconds = [UInt64](repeating: 0, count: steps.count)
            stepSplits = [:]
            workerPool?.timing = profiling
        }
    }
    private var stepNanoseconds: [UInt64] = []
    /// Per step split across the pool's workers (as timed by the pool, in nanoseconds): worker 0's
    /// waits at the joins, the other workers' time in the step's jobs, and how many workers there were.
    private var stepSplits: [Int: (waited: UInt64, othersBusy: UInt64, workers: Int)] = [:]

    /// Each step's layer (the node it writes), operation and the seconds worker 0 spent in it
    /// while `profiling` was on, in execution order. For a step run by worker 0 with the other
    /// workers of the pool at hand (one image on several threads), also the seconds of it worker 0
    /// waited for them at the joins (`waited`), and the seconds each of the others worked on it, on
    /// average (`othersBusy`; near `seconds` when the step was shared well, 0 when worker 0 ran it
    /// alone). Nil for those where there was no pool (one thread, a batch in tiles a worker) and
    /// for the steps of an inverted-bottleneck chain (one hand-over for the chain).
    public var stepProfile: [StepTime] {
        steps.indices.map { position in
            let operation = Mirror(reflecting: steps[position].kind).children.first?.label ?? "\(steps[position].kind)"
            let split = stepSplits[position]
            return (nodeNames[steps[position].destination], operation,
                    Double(position < stepNanoseconds.count ? stepNanoseconds[position] : 0) / 1e9,
                    split.map { Double($0.waited) / 1e9 }, split.map { Double($0.othersBusy) / 1e9 / Double(max($0.workers - 1, 1)) })
        }
    }

    /// Activation buffers per worker, planned at first use and reused while
    /// the batch fits (an executor runs one `run` at a time; others wait).
    private let lock = NSLock()
    private let runLock = NSLock()
    private var arenas: [Int: Arena] = [:]
    /// Threads kept between calls (guarded by `runLock`); replaced when the thread count changes.
    private var workerPool: WorkerPool?

    /// The shares of the work split in fixed ranges that the `threads` workers start from (for
    /// tests: the values must not depend on them).
    package func setBalance(_ shares: [Double], threads: Int) {
        pool(threads).balance = shares
    }

    private func pool(_ threads: Int) -> WorkerPool {
        if let workerPool, workerPool.count == threads { return workerPool }
        workerPool?.shutdown()
        let pool = WorkerPool(count: threads)
        pool.timing = profiling
        workerPool = pool
        return pool
    }

    deinit {
        workerPool?.shutdown()
        headArena.buffers.values.forEach(FloatMemory.release)
    }

    private final class Arena {
        var capacity = 0
        var buffers: [UnsafeMutablePointer<Float>] = []
        private var scratchBuffer: UnsafeMutablePointer<Float>?
        private var scratchCount = 0

        /// In 4 KiB pages: activations in huge pages ran no faster at batch 16 on two threads
        /// (ResNet50 224 21.2 against 26.0 img/s, MobileNetV2 224 202 against 236; AMD Zen 3,
        /// medians of 4 alternating runs, noisy).
        static func allocateAligned(_ count: Int) -> UnsafeMutablePointer<Float> {
            FloatMemory.allocate(count, huge: false)
        }

        /// A scratch buffer of at least `count` floats (kept and grown across steps).
        func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
            if let scratchBuffer, scratchCount >= count { return scratchBuffer }
            FloatMemory.release(scratchBuffer)
            let buffer = Self.allocateAligned(count)
            scratchBuffer = buffer
            scratchCount = count
            return buffer
        }

        deinit {
            buffers.forEach(FloatMemory.release)
            FloatMemory.release(scratchBuffer)
        }
    }

    private func arena(worker: Int, batch: Int) -> Arena {
        lock.lock()
        defer { lock.unlock() }
        let arena = arenas[worker] ?? Arena()
        arenas[worker] = arena
        if arena.capacity < batch {
            arena.buffers.forEach(FloatMemory.release)
            arena.buffers = bufferSizes.map { Arena.allocateAligned($0 * batch) }
            arena.capacity = batch
        }
        return arena
    }

    /// The steps over one tile. With `handOff` (a node and where its values go), the steps stop
    /// before the head and the node's values are copied out for it.
    private func runPart(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, batch: Int, worker: Int,
                         observer: ExecutionObserver?, parallel: StepParallelism = .serial,
                         handOff: (node: Int, to: UnsafeMutablePointer<Float>)? = nil) {
        let arena = arena(worker: worker, batch: batch)
        // Scratch of the workers sharing a split step (their own arenas hold no activations).
        let arenas = parallel.workers == 1 ? [] : [arena] + (1..<parallel.workers).map { self.arena(worker: $0, batch: 0) }
        func pointer(_ index: Int) -> UnsafePointer<Float> {
            if index == inputIndex { return input }
            if index == outputIndex { return UnsafePointer(output) }
            return UnsafePointer(arena.buffers[bufferOfNode[index]!])
        }
        if let observer, let observation = observed[inputIndex] {
            observer(observation, UnsafeBufferPointer(start: input, count: batch * inputSize), worker)
        }
        let timing = profiling && worker == 0
        var position = 0
        while position < steps.count {
            defer { position += 1 }
            let step = steps[position]
            if let handOff, position == headStart {
                handOff.to.update(from: pointer(handOff.node), count: batch * sizes[handOff.node])
                return
            }
            if parallel.workers > 1, case let end = chainEnds[position], end > position, end <= (handOff == nil ? steps.count : headStart ?? steps.count) {
                runBottlenecks(position..<end, pointer: pointer, batch: batch, parallel: parallel, arenas: arenas, arena: arena, output: output,
                               timing: timing)
                if let observer, let observation = observedAfterStep[end - 1] {
                    observer(observation, UnsafeBufferPointer(start: pointer(steps[end - 1].destination), count: batch * sizes[steps[end - 1].destination]),
                             worker)
                }
                position = end - 1
                continue
            }
            let started = timing ? StepTiming(parallel.pool) : nil
            defer { if let started { record(started, position: position) } }
            let destination = step.destination == outputIndex ? output : arena.buffers[bufferOfNode[step.destination]!]
            // The next step's first weights for each worker (`leadingWeights`), found here on the
            // caller: a worker that looked them up itself (at the end of its share of a step split
            // by columns) copied the next step, retaining and releasing its weights' storage, and
            // the caller's own copies of that step then found the reference counts on the other
            // core. EfficientNetB0 96 at batch 1 on two threads, Intel Xeon (family 6 model 207):
            // the caller's retains and releases 115 → 89 µs an image (perf), 749.6 → 776.5 img/s
            // (medians of 8 alternating runs).
            let next = parallel.workers > 1 && position + 1 < steps.count ? steps[position + 1] : nil
            let count = withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: parallel.workers) { leads in
                for worker in leads.indices {
                    leads[worker] = next.flatMap {
                        Self.leadingWeights($0.kind, batch: batch, count: batch * sizes[$0.destination], workers: parallel.workers, worker: worker)
                    }
                }
                return runStep(step, step.sources.map(pointer), destination, batch: batch, parallel: parallel, arenas: arenas, arena: arena) {
                    leads[$0]
                }
            }
            if let observer, let observation = observedAfterStep[position] {
                observer(observation, UnsafeBufferPointer(start: destination, count: count), worker)
            }
        }
        if outputIndex == inputIndex { output.update(from: input, count: batch * outputSize) }
    }

    /// Bottleneck steps `range` of one tile, split across the workers in one hand-over
    /// (`InvertedBottleneck.run(chain:)`); with `timing`, each step's time from the end of the one
    /// before.
    private func runBottlenecks(_ range: Range<Int>, pointer: (Int) -> UnsafePointer<Float>, batch: Int, parallel: StepParallelism,
                                arenas: [Arena], arena: Arena, output: UnsafeMutablePointer<Float>, timing: Bool) {
        let chain = range.map { position -> InvertedBottleneck.Link in
            let step = steps[position]
            guard case let .invertedBottleneck(plan) = step.kind else { preconditionFailure("a chain of bottleneck steps") }
            return InvertedBottleneck.Link(plan: plan.plain, x: pointer(step.sources[0]), residual: step.sources.count > 1 ? pointer(step.sources[1]) : nil,
                                           y: step.destination == outputIndex ? output : arena.buffers[bufferOfNode[step.destination]!])
        }
        let floats = InvertedBottleneck.scratchFloats(chain: chain.map(\.plan), batch: batch, workers: parallel.workers)
        var started = timing ? DispatchTime.now().uptimeNanoseconds : 0
        InvertedBottleneck.run(chain: chain, batch: batch, parallel: parallel, scratch: { arenas[$0].scratch(floats) },
                               ended: !timing ? nil : { k in
                                   let now = DispatchTime.now().uptimeNanoseconds
                                   self.stepNanoseconds[range.lowerBound + k] += now - started
                                   started = now
                               })
    }


    /// One step over `batch` samples: split across `parallel`'s workers where it pays (each with
    /// its scratch in `arenas`), else whole on the caller (scratch in `arena`). Returns the floats written.
    /// `lead(worker)`: the first weights that worker reads in the next step (`leadingWeights`), which
    /// a step split by columns prefetches as the worker's share ends.
    @discardableResult
    private func runStep(_ step: Step, _ sources: [UnsafePointer<Float>], _ destination: UnsafeMutablePointer<Float>, batch: Int,
                         parallel: StepParallelism, arenas: [Arena], arena: Arena,
                         lead: (Int) -> UnsafePointer<Float>? = { _ in nil }) -> Int {
        let count = batch * sizes[step.destination]
        if parallel.workers == 1
            || !Self.executeSplit(step.kind, sources, destination, batch: batch, count: count, parallel: parallel, arenas: arenas, lead: lead) {
            Self.execute(step.kind, sources, destination, batch: batch, count: count, arena: arena)
        }
        return count
    }

    /// A conv step's second source: the shortcut of the Add fused into it, or nil.
    private static func residual(_ inputs: [UnsafePointer<Float>]) -> UnsafePointer<Float>? {
        inputs.count > 1 ? inputs[1] : nil
    }


    /// Runs a step split across `parallel`'s workers (by output rows of each image, or by
    /// elements), each part computed exactly as in the whole step; false (nothing done) for
    /// steps that are not split or too small to split.
    private static func executeSplit(_ kind: Kind, _ inputs: [UnsafePointer<Float>], _ y: UnsafeMutablePointer<Float>,
                                     batch: Int, count: Int, parallel: StepParallelism, arenas: [Arena],
                                     lead: (Int) -> UnsafePointer<Float>?) -> Bool {
        let x = inputs[0]
        switch kind {
        case let .conv2d(kernel, panels, bias, geometry, 1, activation)
            where Kernels.isPointwise(geometry) && sharesColumns(geometry, batch: batch, activation: activation, workers: parallel.workers):
            // Few pixels (the last stages at batch 1): the output channels are shared instead.
            return splitColumns(rows: batch * geometry.outHeight * geometry.outWidth, inputs: geometry.inChannels, kernel: kernel,
                                panels: panels, bias: bias, residual: residual(inputs), units: geometry.outChannels,
                                activation: activation, x, y, parallel: parallel, lead: lead)
        case let .conv2d(kernel, panels, bias, geometry, 1, activation)
            where !Kernels.isPointwise(geometry) && sharesColumns(geometry, batch: batch, activation: activation, workers: parallel.workers):
            // Few pixels (7×7 maps at batch 1): the output channels are shared, each worker reading
            // its part of the kernel once, instead of every worker reading all of it.
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    let parts = columnParts(geometry.outChannels, workers: parallel.workers)
                    parallel.run(parts: parts) { part, worker in
                        let columns = StepParallelism.range(part: part, of: parts, count: geometry.outChannels, align: Kernels.panelWidth)
                        guard !columns.isEmpty else { return }
                        _ = Kernels.conv2dColumns(input: x, batch: batch, geometry, kernel: w.baseAddress!, panels: panels?.pointer, bias: b,
                                                  residual: residual(inputs), columns: columns, activation: activation, output: y,
                                                  scratch: arenas[worker].scratch(Kernels.patchScratch(geometry, batch: batch)),
                                                  then: parallel.continues(after: part, of: parts) ? .nextColumns : lead(worker).map { .panel($0) })
                    }
                }
            }
            return true
        case let .transpose(shape, perm) where count >= 8192 * parallel.workers:
            // A map's layout change (the NHWC → NCHW of an ONNX model's output map): by the rows of
            // each matrix, each worker writing its own columns of the transpose.
            guard let m = Kernels.transposedMatrices(shape: shape, perm: perm), m.a > 4 else { return false }
            splitImageRows(images: batch * m.outer, rows: m.a, parallel: parallel) { matrix, rows, _ in
                Kernels.transposeRows(x + matrix * m.a * m.b, y + matrix * m.a * m.b, a: m.a, b: m.b, rows: rows)
            }
            return true
        case let .dilated(conv) where conv.geometry.outHeight >= 2 * parallel.workers:
            // By output rows (each row's sums in the same order whatever the split).
            let g = conv.geometry, inputFloats = g.inHeight * g.inWidth * g.inChannels, outputFloats = g.outHeight * g.outWidth * g.outChannels
            splitImageRows(images: batch, rows: g.outHeight, parallel: parallel) { b, rows, worker in
                conv.run(x + b * inputFloats, rows: rows, y + b * outputFloats, scratch: arenas[worker].scratch(conv.scratchFloats))
            }
            return true
        case let .transposedConv(conv) where conv.geometry.inHeight >= 2 * parallel.workers:
            // By input rows, each worker writing the output rows its rows own (the values do not
            // depend on the split).
            let g = conv.geometry, inputFloats = g.inHeight * g.inWidth * g.inChannels, outputFloats = g.outHeight * g.outWidth * g.outChannels
            splitImageRows(images: batch, rows: g.inHeight, parallel: parallel) { b, rows, worker in
                conv.run(x + b * inputFloats, inputRows: rows, y + b * outputFloats, scratch: arenas[worker].scratch(conv.scratchFloats))
            }
            return true
        case let .upsample(height, width, channels, factorY, factorX, bilinear, channelsFirst) where count >= 8192 * parallel.workers:
            parallel.run(balancing: batch * height * factorY) { rows, _ in
                Kernels.upsample(x, y, rows: rows, height: height, width: width, channels: channels, factorY: factorY, factorX: factorX,
                                 bilinear: bilinear, channelsFirst: channelsFirst)
            }
            return true
        case let .window(window, channels) where count >= 8192 * parallel.workers:
            parallel.run(balancing: batch * window.outHeight) { rows, _ in Kernels.window(x, y, window, channels: channels, rows: rows) }
            return true
        case let .dense(kernel, panels, bias, inputs, units, activation)
            where sharesColumns(rows: count / max(units, 1), units: units, weightFloats: inputs * units, workers: parallel.workers):
            // A softmax head (1280 -> 1000 at batch 1: a quarter of a millisecond of weights
            // streamed) is shared by columns too, the softmax over each whole row after.
            let elementwise = Kernels.isElementwise(activation)
            _ = splitColumns(rows: count / max(units, 1), inputs: inputs, kernel: kernel, panels: panels, bias: bias, units: units,
                             activation: elementwise ? activation : .linear, x, y, parallel: parallel, lead: lead)
            if !elementwise { Kernels.activate(y, count: count, channels: units, kind: activation) }
            return true
        case let .grouped(conv)
            where sharesGroups(groups: conv.groups, weightFloats: conv.weightFloats,
                               inputFloats: batch * conv.geometry.inHeight * conv.geometry.inWidth * conv.geometry.inChannels,
                               elementwise: Kernels.isElementwise(conv.activation), workers: parallel.workers):
            let g = conv.geometry
            parallel.run(balancing: conv.groups, align: conv.groups % 2 == 0 ? 2 : 1) { groups, worker in
                conv.run(x, batch: batch, g, only: groups, output: y, scratch: arenas[worker].scratch(GroupedConvolution.scratchFloats(g)))
            }
            return true
        case let .scaledPointwise(plan):
            let rows = batch * plan.pixels, shortcut = inputs.count > 2 ? inputs[2] : nil
            if sharesColumns(plan.geometry, batch: batch, activation: plan.activation, workers: parallel.workers) {
                // Few pixels: the output channels are shared, each worker scaling all of the rows
                // (at most 256) into its own scratch.
                parallel.run(balancing: plan.units, align: Kernels.panelWidth) { columns, worker in
                    guard !columns.isEmpty else { return }
                    plan.runColumns(x, scales: inputs[1], residual: shortcut, batch: batch, columns: columns, y,
                                    scratch: arenas[worker].scratch(rows * plan.inputs), then: lead(worker).map { .panel($0) })
                }
                return true
            }
            guard rows >= 16 * parallel.workers else { return false }
            parallel.run(balancing: rows) { part, worker in
                plan.run(x, scales: inputs[1], residual: shortcut, rows: part, y, scratch: arenas[worker].scratch(plan.chunkFloats))
            }
            return true
        case let .globalPool(pixels, channels, isMax) where sharesPixels(pixels: pixels, channels: channels, batch: batch, workers: parallel.workers):
            // Each worker the blocks of pixels it (most likely) wrote in the step before; their
            // sums added in order after.
            let blocks = batch * Kernels.globalPoolBlocks(pixels: pixels)
            let partial = arenas[0].scratch(blocks * channels)
            parallel.run(balancing: blocks) { part, _ in
                Kernels.globalPoolBlocks(input: x, pixels: pixels, channels: channels, blocks: part, isMax: isMax, partial: partial)
            }
            Kernels.globalPoolCombine(partial: partial, batch: batch, pixels: pixels, channels: channels, isMax: isMax, output: y)
            return true
        case let .grouped(conv):
            return splitRows(conv.geometry, batch: batch, x, y, parallel: parallel) { part, xi, yo, worker in
                conv.run(xi, batch: 1, part, output: yo, scratch: arenas[worker].scratch(GroupedConvolution.scratchFloats(part)))
            }
        case let .conv2d(_, panels?, bias, geometry, 1, activation)
            where Kernels.isPointwise(geometry) && sharesPixels(geometry, workers: parallel.workers):
            // A 1×1 conv on a small map (one part a worker): the pixels, not whole rows, go by the
            // workers' measured speeds.
            let depth = geometry.inChannels, units = geometry.outChannels, shortcut = residual(inputs)
            Weights.optional(bias) { b in
                parallel.run(balancing: batch * geometry.outHeight * geometry.outWidth) { pixels, _ in
                    Kernels.panelGEMM(input: x + pixels.lowerBound * depth, rows: pixels.count, inputs: depth, panels: panels.pointer,
                                      bias: b, residual: shortcut.map { $0 + pixels.lowerBound * units }, units: units,
                                      activation: activation, output: y + pixels.lowerBound * units)
                }
            }
            return true
        case let .conv2d(kernel, panels, bias, geometry, 1, activation):
            return kernel.withUnsafeValues { w in
                var split = false
                Weights.optional(bias) { b in
                    let shortcut = residual(inputs)
                    // A 1-D conv (one row) is shared by its steps, run down a column: the same sums.
                    // (On one thread it keeps its row: 3–6% faster there, ResNet1D 4096 on AMD Zen 4.)
                    split = splitRows(geometry.alongRows, batch: batch, x, y, parallel: parallel) { part, xi, yo, worker in
                        Kernels.conv2dGEMM(input: xi, batch: 1, part, kernel: w.baseAddress!, panels: panels?.pointer, bias: b,
                                           residual: shortcut.map { $0 + (yo - y) }, activation: activation, output: yo,
                                           scratch: arenas[worker].scratch(Kernels.patchScratch(part, batch: 1)))
                    }
                }
                return split
            }
        case let .winograd(transformed, bias, geometry, activation, false)
            where winogradSharesColumns(outHeight: geometry.outHeight, outWidth: geometry.outWidth, outChannels: geometry.outChannels,
                                        batch: batch, elementwise: Kernels.isElementwise(activation), workers: parallel.workers):
            // Few tiles (a 6×6 map at batch 1 is three rows of 2×2 tiles, split 2 + 1 by rows): the
            // output channels are shared instead, every worker transforming all of the input.
            Weights.optional(bias) { b in
                parallel.run(balancing: geometry.outChannels, align: Kernels.panelWidth) { columns, worker in
                    Kernels.winogradConv3x3Columns(input: x, batch: batch, geometry, transformed: transformed.pointer, bias: b,
                                                   activation: activation, columns: columns, output: y,
                                                   scratch: arenas[worker].scratch(Kernels.winogradScratch(geometry)),
                                                   then: lead(worker))
                }
            }
            return true
        case let .winograd(transformed, bias, geometry, activation, pool):
            do {
                let u = transformed.pointer
                var split = false
                Weights.optional(bias) { b in
                    // Whole 2×2 output tiles in each part: the same tiles, the same sums (with the
                    // max pooling fused, whole pooling windows: each part writes its own pooled rows).
                    split = splitRows(geometry, batch: batch, x, y, align: 2, pooled: pool, parallel: parallel) { part, xi, yo, worker in
                        Kernels.winogradConv3x3(input: xi, batch: 1, part, transformed: u, bias: b, activation: activation,
                                                pool: pool, output: yo, scratch: arenas[worker].scratch(Kernels.winogradScratch(part)))
                    }
                }
                return split
            }
        case let .depthwise(kernel, bias, geometry, multiplier, activation, reluInput):
            return kernel.withUnsafeValues { w in
                var split = false
                Weights.optional(bias) { b in
                    split = splitRows(geometry, batch: batch, x, y, parallel: parallel) { part, xi, yo, _ in
                        Kernels.depthwiseConv2d(input: xi, batch: 1, part, multiplier: multiplier, kernel: w.baseAddress!, bias: b,
                                                activation: activation, reluInput: reluInput, output: yo)
                    }
                }
                return split
            }
        case let .separable(depthwise, pointwise, panels, bias, geometry, units, activation)
            where separableSharesColumns(outHeight: geometry.outHeight, outWidth: geometry.outWidth, batch: batch, units: units,
                                         elementwise: Kernels.isElementwise(activation), workers: parallel.workers):
            // Few rows (Xception's exit flow at batch 1): split by rows, every worker would read
            // all of the pointwise kernel (1536 x 2048: 12 MB, from memory) for a share of one or
            // two rows. The depthwise output goes whole into shared scratch (by rows across the
            // workers), then the pointwise GEMM's output columns are shared, as for a 1x1 conv on
            // a small map.
            let pixels = batch * geometry.outHeight * geometry.outWidth
            let middle = arenas[0].scratch(pixels * geometry.outChannels)
            let rows = splitRows(geometry, batch: batch, x, middle, parallel: parallel) { part, xi, yo, _ in
                depthwise.run(xi, batch: 1, part, output: yo)
            }
            if !rows { depthwise.run(x, batch: batch, geometry, output: middle) }
            return splitColumns(rows: pixels, inputs: geometry.outChannels, kernel: pointwise, panels: panels, bias: bias, units: units,
                                activation: activation, UnsafePointer(middle), y, parallel: parallel, lead: lead)
        case let .separable(depthwise, pointwise, panels, bias, geometry, units, activation):
            return pointwise.withUnsafeValues { pw in
                var split = false
                Weights.optional(bias) { b in
                    split = splitRows(geometry, batch: batch, x, y, outputChannels: units, parallel: parallel) { part, xi, yo, worker in
                        separable(xi, batch: 1, part, depthwise: depthwise, pointwise: pw.baseAddress!, panels: panels?.pointer, bias: b,
                                  units: units, activation: activation, yo, arena: arenas[worker])
                    }
                }
                return split
            }
        case let .pointwiseDepthwise(plan) where plan.geometry.outHeight >= parallel.workers && plan.sharesExpansion(workers: parallel.workers):
            // A small map whose strips would compute many rows twice: the workers expand their
            // shares of its rows into one map (in the first worker's scratch), then filter their
            // shares of the output rows from it, each by the workers' measured speeds.
            // (With a projection, each worker's share of the depthwise output in its own scratch:
            // the first worker's after the expansion.)
            let share = plan.filterFloats(rows: plan.geometry.outHeight)
            let expanded = arenas[0].scratch(plan.expansionFloats + share)
            for b in 0..<batch {
                let image = x + b * plan.inputFloats, out = y + b * plan.outputFloats, shortcut = residual(inputs).map { $0 + b * plan.outputFloats }
                parallel.run(balancing: plan.geometry.inHeight) { rows, _ in plan.expand(image, rows: rows, into: expanded) }
                parallel.run(balancing: plan.geometry.outHeight) { rows, worker in
                    plan.filter(UnsafePointer(expanded), rows: rows, residual: shortcut, out,
                                scratch: worker == 0 ? expanded + plan.expansionFloats : arenas[worker].scratch(share))
                }
            }
            return true
        case let .pointwiseDepthwise(plan) where plan.geometry.outHeight >= parallel.workers:
            // Each worker its share of the output rows (in proportion to the workers' measured
            // speeds), in strips, with its own window (the rows its strips share with the other
            // worker's computed by both: the same values).
            for b in 0..<batch {
                parallel.run(balancing: plan.geometry.outHeight) { rows, worker in
                    plan.run(x + b * plan.inputFloats, rows: rows, residual: residual(inputs).map { $0 + b * plan.outputFloats },
                             y + b * plan.outputFloats, scratch: arenas[worker].scratch(plan.scratchFloats))
                }
            }
            return true
        case let .invertedBottleneck(plan):
            // The parts shared by the workers, each in its own scratch; then, once all are done,
            // each worker adds its share of the output from the parts' sums (in the same hand-over).
            let floats = InvertedBottleneck.scratchFloats(chain: [plan.plain], batch: batch, workers: parallel.workers)
            InvertedBottleneck.run(chain: [InvertedBottleneck.Link(plan: plan.plain, x: x, residual: residual(inputs), y: y)], batch: batch,
                                   parallel: parallel, scratch: { arenas[$0].scratch(floats) })
            return true
        case let .pool(geometry, isMax):
            return splitRows(geometry, batch: batch, x, y, parallel: parallel) { part, xi, yo, _ in
                Kernels.pool2d(input: xi, batch: 1, part, isMax: isMax, output: yo)
            }
        case let .dense(kernel, panels, bias, inputs, units, activation):
            let rows = count / max(units, 1)
            guard rows >= 24 * parallel.workers else { return false }
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    parallel.run(balancing: rows, align: 12) { part, _ in
                        Kernels.denseGEMM(input: x + part.lowerBound * inputs, rows: part.count, inputs: inputs, kernel: w.baseAddress!,
                                          panels: panels?.pointer, bias: b, units: units, activation: activation,
                                          output: y + part.lowerBound * units)
                    }
                }
            }
            return true
        case let .activation(activation, channels):
            return splitElements(count: count, align: channels, parallel: parallel) { part in
                Kernels.activate(from: x + part.lowerBound, to: y + part.lowerBound, count: part.count, channels: channels, kind: activation)
            }
        case let .concatenate(outer, chunks, activation) where batch * outer >= 2 * parallel.workers && count >= 8192 * parallel.workers:
            // By blocks (a channel concatenation's pixels), each worker copying the pixels it most
            // likely wrote in the steps before: DenseNet's, one after each of its convs, copied by
            // worker 0 alone half from the other core's cache, took longer on two threads than on
            // one (DenseNet121 160 at batch 1, Intel Xeon (family 6 model 207): 171 → 217 ms of
            // 1,106 in profiles of 96 images).
            parallel.run(balancing: batch * outer) { blocks, _ in
                concatenate(inputs, chunks: chunks, activation: activation, blocks: blocks, y)
            }
            return true
        case let .layerNormTrailing(inner, gamma, beta, epsilon) where count >= 8192 * parallel.workers && inner > 0:
            // By rows (each row's statistics its own: the values do not depend on the split). Run
            // whole, ConvNeXt-T 160's layer norms took as long on two threads as on one (28 ms of
            // 2,460 for the first stage's in a profile of 96 images at batch 1).
            Weights.optional(gamma) { g in
                Weights.optional(beta) { b in
                    parallel.run(balancing: count / inner) { rows, _ in
                        Kernels.layerNormTrailing(x + rows.lowerBound * inner, y + rows.lowerBound * inner, rows: rows.count, inner: inner,
                                                  gamma: g, beta: b, epsilon: epsilon)
                    }
                }
            }
            return true
        case let .affine(scale, shift, channels, activation):
            // Parts of whole rows of channels (bounds multiples of the channel count and of 16).
            var align = channels
            while align % 16 != 0 { align += channels }
            return scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { t in
                    splitElements(count: count, align: align, parallel: parallel) { part in
                        Kernels.affine(from: x + part.lowerBound, to: y + part.lowerBound, count: part.count, channels: channels,
                                       scale: s.baseAddress!, shift: t.baseAddress!, activation: activation)
                    }
                }
            }
        case .multiply where inputs.count == 2:
            let other = inputs[1]
            return splitElements(count: count, align: 1, parallel: parallel) { part in
                for i in part { y[i] = x[i] * other[i] }
            }
        case let .add(activation, channels) where inputs.count == 2:
            return splitElements(count: count, align: channels, parallel: parallel) { part in
                Kernels.add(x + part.lowerBound, inputs[1] + part.lowerBound, into: y + part.lowerBound, count: part.count, channels: channels,
                            activation: activation)
            }
        case let .scaleChannels(scaled, pixels, channels):
            guard pixels >= 16 * parallel.workers else { return false }
            let features = inputs[scaled], scales = inputs[1 - scaled]
            for b in 0..<batch {
                parallel.run(balancing: pixels) { part, _ in
                    let offset = (b * pixels + part.lowerBound) * channels
                    Kernels.scaleChannels(features + offset, scales: scales + b * channels, into: y + offset, batch: 1, pixels: part.count,
                                          channels: channels)
                }
            }
            return true
        default:
            return false
        }
    }

    /// A separable conv of `batch` images of `g` (the depthwise output's shape): the depthwise
    /// conv into scratch, then the pointwise GEMM from it. A large depthwise output with a small
    /// pointwise kernel goes a few output rows at a time (`separableRows`), so the GEMM reads
    /// it from L2 instead of L3 (Xception's 109×109×128 maps: 6 MB a image); each value is the
    /// same as in one pass over the image (`Spatial.rows`).
    private static func separable(_ x: UnsafePointer<Float>, batch: Int, _ g: Kernels.Spatial, depthwise: DepthwiseStage,
                                  pointwise: UnsafePointer<Float>, panels: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, units: Int,
                                  activation: ActivationKind, _ y: UnsafeMutablePointer<Float>, arena: Arena) {
        let inImage = g.inHeight * g.inWidth * g.inChannels, outImage = g.outHeight * g.outWidth * units
        func run(_ xi: UnsafePointer<Float>, images: Int, _ part: Kernels.Spatial, _ yo: UnsafeMutablePointer<Float>,
                 streamed: Bool? = nil) {
            let pixels = images * part.outHeight * part.outWidth
            let middle = arena.scratch(pixels * part.outChannels)
            depthwise.run(xi, batch: images, part, output: middle, streamed: streamed)
            Kernels.denseGEMM(input: middle, rows: pixels, inputs: part.outChannels, kernel: pointwise, panels: panels, bias: bias,
                              units: units, activation: activation, output: yo)
        }
        let chunk = separableRows(g, units: units)
        let chunks = stride(from: 0, to: g.outHeight, by: chunk).map { start in
            (start, g.rows(start..<min(start + chunk, g.outHeight)))
        }
        guard chunk < g.outHeight, chunks.allSatisfy({ $0.1 != nil }) else {
            // Whole images a pass, as many as keep the depthwise output within 512 KiB (at least one);
            // the whole batch's input decides whether the depthwise rows come from beyond L2. (A map
            // in chunks of rows, below, goes by each chunk's input: prefetching MobileNetV2 224's
            // 112×112×32 at batch 1 made that step 8% slower.)
            let images = separableImages(g, batch: batch), streamed = batch * inImage > Kernels.depthwisePrefetchFloats
            for first in stride(from: 0, to: batch, by: images) {
                run(x + first * inImage, images: min(images, batch - first), g, y + first * outImage, streamed: streamed)
            }
            return
        }
        for b in 0..<batch {
            let image = x + b * inImage, out = y + b * outImage
            for case let (start, (first, part)?) in chunks {
                run(image + first * g.inWidth * g.inChannels, images: 1, part, out + start * g.outWidth * units)
            }
        }
    }

    /// Images per pass of `separable` when each goes in one pass: as many as keep the depthwise
    /// output within 512 KiB, so the GEMM reads it from L2 (at least one). All of a batch in one
    /// pass wrote it to L3 and read it back: MobileNetV2 96's first separable step at batch 16
    /// (48×48×32 an image, 4.7 MB).
    static func separableImages(_ g: Kernels.Spatial, batch: Int) -> Int {
        max(1, min(batch, separablePassFloats / max(g.outHeight * g.outWidth * g.outChannels, 1)))
    }

    /// The depthwise output (floats, 512 KiB) a pass of `separable` keeps in L2.
    static let separablePassFloats = 1 << 17

    /// Output rows per pass of `separable`: all of them unless the depthwise output is over 512 KiB
    /// and the pointwise panels fit in 256 KiB (both then stay in L2: a chunk of about 256 KiB of
    /// depthwise output, the panels read again per chunk from L2). Larger panels (Xception's
    /// 728 × 728, 2 MB) would be read again per chunk from L3, so the map goes in one pass.
    static func separableRows(_ g: Kernels.Spatial, units: Int) -> Int {
        let rowFloats = max(g.outWidth * g.outChannels, 1)
        guard g.outChannels * units <= 1 << 16, g.outHeight * rowFloats > separablePassFloats else { return max(g.outHeight, 1) }
        return max(1, min(g.outHeight, (1 << 16) / rowFloats))
    }

    /// Each image's output rows split into parts (`rowParts`; bounds multiples of `align`) that the
    /// workers share as `StepParallelism.run(parts:)` does, each part run by `body(geometry of the
    /// part, its first input row, its first output row, worker)`. With one part a worker, the rows
    /// go by the workers' measured speeds (`StepParallelism.run(balancing:)`).
    /// `pooled`: the step writes its output through a 2×2 stride-2 max pooling (`align` 2), so
    /// the output is half the rows and columns and a part's first output row is half its first row.
    private static func splitRows(_ g: Kernels.Spatial, batch: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                  align: Int = 1, outputChannels: Int? = nil, pooled: Bool = false, parallel: StepParallelism,
                                  _ body: (Kernels.Spatial, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Bool {
        guard g.outHeight >= parallel.workers * align else { return false }
        // Nil when a part would read no input row.
        func pieces(_ parts: Int) -> [(rows: Range<Int>, first: Int, geometry: Kernels.Spatial)]? {
            let all = (0..<parts).compactMap { part -> (rows: Range<Int>, first: Int, geometry: Kernels.Spatial)? in
                let rows = StepParallelism.range(part: part, of: parts, count: g.outHeight, align: align)
                return g.rows(rows).map { (rows, $0.firstInputRow, $0.geometry) }
            }
            return all.count == parts ? all : nil
        }
        guard let pieces = pieces(rowParts(outHeight: g.outHeight, outWidth: g.outWidth, align: align, workers: parallel.workers)) ?? pieces(parallel.workers) else { return false }
        let outChannels = outputChannels ?? g.outChannels
        let scale = pooled ? 2 : 1, outWidth = g.outWidth / scale
        let inImage = g.inHeight * g.inWidth * g.inChannels, outImage = g.outHeight / scale * outWidth * outChannels
        if pieces.count == parallel.workers, g.everyOutputRowReadsInput {
            // One part a worker (a small map: parts of fewer than 256 pixels would not pay): the
            // rows go by the workers' measured speeds instead of in equal parts.
            for b in 0..<batch {
                parallel.run(balancing: g.outHeight, align: align) { rows, worker in
                    guard let (first, part) = g.rows(rows) else { preconditionFailure("every output row reads the input") }
                    body(part, x + b * inImage + first * g.inWidth * g.inChannels, y + b * outImage + rows.lowerBound / scale * outWidth * outChannels,
                         worker)
                }
            }
            return true
        }
        for b in 0..<batch {
            parallel.run(parts: pieces.count) { part, worker in
                let piece = pieces[part]
                body(piece.geometry, x + b * inImage + piece.first * g.inWidth * g.inChannels,
                     y + b * outImage + piece.rows.lowerBound / scale * outWidth * outChannels, worker)
            }
        }
        return true
    }

    /// The rows of every image (`images` of `rows` rows each) shared by the workers by their measured
    /// speeds: `body(image, rows, worker)` for each image's part of a worker's share.
    private static func splitImageRows(images: Int, rows perImage: Int, parallel: StepParallelism,
                                       _ body: (Int, Range<Int>, Int) -> Void) {
        parallel.run(balancing: images * perImage) { part, worker in
            var row = part.lowerBound
            while row < part.upperBound {
                let image = row / perImage, end = min(part.upperBound, (image + 1) * perImage)
                body(image, (row - image * perImage)..<(end - image * perImage), worker)
                row = end
            }
        }
    }

    /// Whether a 1×1 conv's pixels (its GEMM's rows) go to the workers in shares by their measured
    /// speeds rather than by whole output rows: on a map that `splitRows` would cut into one part a
    /// worker. ResNet50 96's 6×6 maps at batch 1 on two threads had 6 rows to share, 3 + 3 in
    /// nearly every step, while one worker took 15% longer than the other on them (AMD Zen 4 under
    /// KVM: the other idle 17–25 µs of about 140 in each such step); by pixels the shares move in
    /// steps of one pixel of 36. The rows of a GEMM are summed alike whatever the split.
    static func sharesPixels(_ g: Kernels.Spatial, workers: Int) -> Bool {
        workers > 1 && g.outHeight >= workers && rowParts(outHeight: g.outHeight, outWidth: g.outWidth, align: 1, workers: workers) <= workers
    }

    /// Whether the workers share a grouped conv by groups (each its groups' weights, bordering the
    /// whole input) rather than by output rows (each all the weights): with at least four groups a
    /// worker, an element-wise activation, and weights over twice the input (ResNeXt's and
    /// RegNet's last stages at batch 1: 3×3 and 6×6 maps). By rows, ResNeXt50 96's last-stage
    /// grouped steps at batch 1 ran 1.04–1.14× faster on two threads than on one; by groups
    /// 114–122 -> 83–107 µs an image (AMD Zen 3). On larger maps with fewer weights (12×12×256 in
    /// groups of 8) by groups was slower than by rows: 62 -> 75 µs.
    package static func sharesGroups(groups: Int, weightFloats: Int, inputFloats: Int, elementwise: Bool, workers: Int) -> Bool {
        workers > 1 && groups >= 4 * workers && elementwise && weightFloats >= 2 * inputFloats
    }

    /// Whether a conv over few pixels (at most 256 a call: the last stages at batch 1; a 1×1 conv, or
    /// one the indirect conv runs) is split by output channels, each worker reading its columns'
    /// weights once and all of the input, rather than by output rows (each worker its rows of the
    /// input and all of the weights): only when the rows are too few for every worker to get
    /// three (as `separableSharesColumns`). By rows, each worker's input is mostly the rows it
    /// wrote in the step before, and the shares go by rows in the workers' measured speeds rather
    /// than by panels (7 panels: 4 + 3, one worker with 57% of the step). Batch 1, two threads,
    /// Intel Xeon (family 6 model 207), medians of 5 alternating runs, img/s, by columns → by
    /// rows on maps of 6 to 14 rows: DenseNet121 160 123.8 → 130.2 (AVX2 80.9 → 82.7),
    /// InceptionV3 160 143.4 → 148.6 (AVX2 96.5 → 96.3), ResNet50 96 264.3 → 269.2 (AVX2 187.0 →
    /// 192.5), EfficientNetB0 160 446.8 → 453.1, EfficientNetV2B0 160 369.6 → 372.9, MobileNetV3Large
    /// 160 770.1 → 774.5; even on MobileNetV2 224 (497.3, 497.2), ResNet50 224 (64.3, 64.8),
    /// EfficientNetB0 224 (259.0, 259.8), and DenseNet121 160 at batch 2 (149.3, 148.6). Before, a
    /// map of enough rows went by columns whenever its panels went evenly or were many. At AVX-512
    /// a worker's share of columns is at least one 64-column block of the GEMM's tile
    /// (`Kernels.fewestColumnsPerWorker`): MobileNetV2 224's 14×14 projections to 64 and 96
    /// channels in 32- and 48-column shares were slower than by rows (313.5 → 344.7 img/s).
    static func sharesColumns(_ g: Kernels.Spatial, batch: Int, activation: ActivationKind, workers: Int) -> Bool {
        (Kernels.isPointwise(g) || (g.dilationX == 1 && Kernels.hasIndirectConvolution)) && Kernels.isElementwise(activation)
            && batch * g.outHeight * g.outWidth <= 256 && g.outChannels >= Kernels.fewestColumnsPerWorker * workers
            && rowsTooFewToShare(g.outHeight, workers: workers)
    }

    /// Whether a small map's output rows are too few to split by (fewer than three a worker), so
    /// that a 1×1 (or depthwise → 1×1) step over it is split by output columns instead
    /// (`sharesColumns`, `separableSharesColumns`).
    static func rowsTooFewToShare(_ outHeight: Int, workers: Int) -> Bool { outHeight < 3 * workers }

    /// Whether a Winograd conv on a small map (at most 256 pixels a call) is split by output
    /// channels, every worker transforming all of the input, rather than by rows of 2×2 tiles: when
    /// an image's tile rows do not go evenly to the workers (a 6×6 map is three, 2 + 1 on two), a
    /// worker would get one tile row (by rows every worker reads all of the weights: 4 MB for
    /// 6×6×256, from memory at batch 1), or more than one image runs (a split by rows goes image by
    /// image). Otherwise rows are faster: ResNet50 96's 12×12×128 steps at batch 1 on two threads
    /// (six tile rows, 3 + 3), AMD Zen 3, 7 alternating profiles of 320 images, the three steps
    /// 182 → 164 ms (medians). Either way every tile's sums are the same: the values do not depend
    /// on the split.
    package static func winogradSharesColumns(outHeight: Int, outWidth: Int, outChannels: Int, batch: Int, elementwise: Bool,
                                              workers: Int) -> Bool {
        let tileRows = (outHeight + 1) / 2
        return elementwise && batch * outHeight * outWidth <= 256 && outChannels >= 32 * workers
            && (batch > 1 || tileRows % workers != 0 || tileRows < 2 * workers)
    }

    /// Whether a global pooling is split across the workers by blocks of pixels (each block's sums
    /// then added in order: the values do not depend on the split): at least two blocks a worker
    /// and 128 KiB of input. A split by channels (each channel's pixels all read by one worker)
    /// had each worker read the half of every map the other core had just written, from that
    /// core's cache: EfficientNetB0 224's squeezes (112 × 112 × 32 down to 7 × 7 × 1152), batch 1,
    /// Intel Xeon (family 6 model 207), took 46–54 ms of about 1,100 on two threads against 34–43
    /// of about 1,800 on one (profiles of 160 images); split by channels before that, worker 0
    /// alone read them all.
    package static func sharesPixels(pixels: Int, channels: Int, batch: Int, workers: Int) -> Bool {
        workers > 1 && batch * Kernels.globalPoolBlocks(pixels: pixels) >= 2 * workers && batch * pixels * channels >= 1 << 15
    }

    /// Whether a depthwise → 1×1 step over few pixels (at most 256 a call) is split by the 1×1's
    /// output columns (the depthwise output whole in shared scratch, every worker reading all of
    /// it) rather than by output rows (each worker its rows through both convs, reading all of the
    /// 1×1's weights): only when the rows are too few for every worker to get three. A share of
    /// three rows or more keeps each worker on the rows it filtered, and the GEMM on rows of its
    /// own; by columns each worker read half of the depthwise output from the other core's cache
    /// and the shares went by 16-column panels (728 columns: 384 + 344). Batch 1, two threads,
    /// Intel Xeon (family 6 model 207), AVX-512, medians of 5 alternating runs, img/s, by columns
    /// → by rows: Xception 224 (14×14 middle flow) 40.1 → 43.2, 160 (10×10) 80.4 → 84.0, 128 (8×8)
    /// 120.0 → 125.8, 96 (6×6) 203.4 → 207.2; MobileNet 160 (10×10) 551.0 → 591.4, 128 (8×8)
    /// 796.7 → 848.8, 96 (6×6) 1261 → 1307, 224 (14×14) 306.2 → 305.9. Fewer rows went better by
    /// columns: 5×5 (Xception 160's exit flow 83.6 vs 82.0 by rows, MobileNet 160's 1024-channel
    /// blocks 592.7 vs 572.7) and 4×4 (Xception 128 124.8 vs 123.1, MobileNet 128 838.8 vs 822.5);
    /// 7×7 (shares of 4 and 3 rows) went even (Xception 224 43.4 vs 43.1, MobileNet 224 309.6 vs 308.2).
    package static func separableSharesColumns(outHeight: Int, outWidth: Int, batch: Int, units: Int, elementwise: Bool,
                                               workers: Int) -> Bool {
        elementwise && batch * outHeight * outWidth <= 256 && units >= 32 * workers && rowsTooFewToShare(outHeight, workers: workers)
    }

    /// Whether a Dense step of `rows` rows is split by output columns: a classifier head at a small
    /// batch (1280 -> 1000 at batch 1: a quarter of a millisecond of weights streamed), or a Dense
    /// over a small map (at most 256 rows a call) whose weights are over 1 MiB, more than the L2
    /// of the cores measured: by rows every worker would stream all of them, by columns each its
    /// share. ConvNeXt-T at batch 1 on two threads, AMD Zen 4, AVX-512, three alternating profiles
    /// each, rows → columns: at 160 the 10×10 stage's 384 ↔ 1536 Denses (2.3 MB each) took
    /// 1,086–1,118 → 977–991 ms of about 2.45 s; at 224 the 7×7 stage's 768 ↔ 3072 (9.4 MB)
    /// 236–280 → 211–226 ms and the 14×14 stage's 654–676 → 636–678. Not on smaller weights: at 96
    /// the 12×12 stage's 192 ↔ 768 (0.6 MB) went even (134–159 against 142–162 ms).
    package static func sharesColumns(rows: Int, units: Int, weightFloats: Int, workers: Int) -> Bool {
        guard units >= 32 * workers else { return false }
        return rows < 24 * workers
            || (rows <= 256 && weightFloats * MemoryLayout<Float>.size > 1 << 20 && units >= Kernels.fewestColumnsPerWorker * workers)
    }

    /// The first weights `worker` reads in a step split by output columns (the first panel of its
    /// share), for the step before to prefetch as it ends; nil for other steps. A step's first
    /// panel otherwise comes from memory with nothing prefetched: 9 × 4608 → 512 from memory in 8
    /// parts on two threads, one step after another, AMD Zen 3, medians of 10 alternating runs:
    /// 411 → 385 µs; 9 × 2048 → 512 171 → 164 µs.
    private static func leadingWeights(_ kind: Kind, batch: Int, count: Int, workers: Int, worker: Int) -> UnsafePointer<Float>? {
        let panels: Panels?, units: Int, depth: Int
        switch kind {
        case let .conv2d(_, p, _, g, 1, activation) where sharesColumns(g, batch: batch, activation: activation, workers: workers):
            (panels, units, depth) = (p, g.outChannels, g.kernelHeight * g.kernelWidth * g.inChannels)
        case let .dense(_, p, _, inputs, n, _) where sharesColumns(rows: count / max(n, 1), units: n, weightFloats: inputs * n, workers: workers):
            (panels, units, depth) = (p, n, inputs)
        case let .winograd(transformed, _, g, activation, false)
            where winogradSharesColumns(outHeight: g.outHeight, outWidth: g.outWidth, outChannels: g.outChannels, batch: batch,
                                        elementwise: Kernels.isElementwise(activation), workers: workers):
            // One range a worker; the first product's panels come first. (The ranges go by the
            // workers' measured speeds: this is the first panel of an equal share, at most a few
            // panels from the worker's own.)
            let columns = StepParallelism.range(part: worker, of: workers, count: g.outChannels, align: Kernels.panelWidth)
            return columns.isEmpty ? nil : transformed.pointer + columns.lowerBound * g.inChannels
        default:
            return nil
        }
        guard let panels else { return nil }
        let parts = columnParts(units, workers: workers)
        let first = StepParallelism.range(part: worker, of: workers, count: parts).lowerBound
        let columns = StepParallelism.range(part: first, of: parts, count: units, align: Kernels.panelWidth)
        return columns.isEmpty ? nil : panels.pointer + columns.lowerBound * depth
    }

    /// How many parts `splitRows` cuts a map's output rows into (taken by the workers as in
    /// `StepParallelism.run(parts:)`): up to four per worker, each of at least 256 output pixels.
    package static func rowParts(outHeight: Int, outWidth: Int, align: Int, workers: Int) -> Int {
        let rows = max(align, (256 + outWidth - 1) / max(outWidth, 1))
        return wholeShares(min(4 * workers, outHeight / rows), workers: workers)
    }

    /// How many parts a split by output columns cuts `units` into: up to four per worker, each of at
    /// least four panels (64 columns).
    package static func columnParts(_ units: Int, workers: Int) -> Int {
        wholeShares(min(4 * workers, (units + Kernels.panelWidth - 1) / Kernels.panelWidth / 4), workers: workers)
    }

    /// `parts` rounded down to a multiple of the workers (at least one each). Parts of one size
    /// that do not go evenly leave the step as long as the most any worker takes: three parts on
    /// two workers run two after each other on one (Xception's 31x31 separable convs at 128x128,
    /// batch 1: two threads 1.48x one on those steps, against 1.75-1.86x on the others).
    package static func wholeShares(_ parts: Int, workers: Int) -> Int {
        max(workers, parts - parts % max(workers, 1))
    }

    /// `y = act(x · kernel + bias)` with the output columns split across the workers (bounds multiples of 16).
    private static func splitColumns(rows: Int, inputs: Int, kernel: Tensor, panels: Panels? = nil, bias: Tensor?,
                                     residual: UnsafePointer<Float>? = nil, units: Int, activation: ActivationKind,
                                     _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, parallel: StepParallelism,
                                     lead: (Int) -> UnsafePointer<Float>?) -> Bool {
        kernel.withUnsafeValues { w in
            Weights.optional(bias) { b in
                let parts = columnParts(units, workers: parallel.workers)
                parallel.run(parts: parts) { part, worker in
                    let columns = StepParallelism.range(part: part, of: parts, count: units, align: Kernels.panelWidth)
                    guard !columns.isEmpty else { return }
                    Kernels.gemmColumns(input: x, rows: rows, inputs: inputs, kernel: w.baseAddress!, panels: panels?.pointer, bias: b,
                                        residual: residual, units: units, columns: columns, activation: activation, output: y,
                                        then: parallel.continues(after: part, of: parts) ? .nextColumns : lead(worker).map { .panel($0) })
                }
            }
        }
        return true
    }

    /// `0..<count` split across the workers (bounds multiples of `align`); false when too small to pay.
    private static func splitElements(count: Int, align: Int, parallel: StepParallelism, _ body: (Range<Int>) -> Void) -> Bool {
        guard count >= 8192 * parallel.workers else { return false }
        parallel.run(balancing: count, align: max(align, 16)) { part, _ in body(part) }
        return true
    }

    /// Blocks `blocks` of a concatenation (each block the inputs' chunks in turn, through the
    /// element-wise `activation`).
    private static func concatenate(_ inputs: [UnsafePointer<Float>], chunks: [Int], activation: ActivationKind, blocks: Range<Int>,
                                    _ y: UnsafeMutablePointer<Float>) {
        let width = chunks.reduce(0, +)
        var target = y + blocks.lowerBound * width
        for block in blocks {
            for (source, chunk) in zip(inputs, chunks) {
                if case .linear = activation {
                    target.update(from: source + block * chunk, count: chunk)
                } else {
                    Kernels.activate(from: source + block * chunk, to: target, count: chunk, channels: chunk, kind: activation)
                }
                target += chunk
            }
        }
    }

    private static func execute(_ kind: Kind, _ inputs: [UnsafePointer<Float>], _ y: UnsafeMutablePointer<Float>,
                                batch: Int, count: Int, arena: Arena) {
        let x = inputs[0]
        // Weights are used where they lie (a view of the mapped .bin, or the tensor's own array).
        switch kind {
        case let .dense(kernel, panels, bias, inputs, units, activation):
            // A Dense on a (…, features) input applies to every row of the last axis.
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    Kernels.denseGEMM(input: x, rows: count / max(units, 1), inputs: inputs, kernel: w.baseAddress!, panels: panels?.pointer,
                                      bias: b, units: units, activation: activation, output: y)
                }
            }
        case let .conv2d(kernel, panels, bias, geometry, groups, activation):
            // Grouped convs are planned as `.depthwise` or `.grouped`.
            precondition(groups == 1, "a grouped conv planned as a GEMM")
            let scratch = arena.scratch(Kernels.patchScratch(geometry, batch: batch))
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    Kernels.conv2dGEMM(input: x, batch: batch, geometry, kernel: w.baseAddress!, panels: panels?.pointer, bias: b,
                                       residual: residual(inputs), activation: activation, output: y, scratch: scratch)
                }
            }
        case let .conv2dMaxPool(kernel, bias, geometry, activation):
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    Kernels.conv2dThenMaxPool(input: x, batch: batch, geometry, kernel: w.baseAddress!, bias: b, activation: activation, output: y)
                }
            }
        case let .winograd(transformed, bias, geometry, activation, pool):
            let scratch = arena.scratch(Kernels.winogradScratch(geometry))
            Weights.optional(bias) { b in
                Kernels.winogradConv3x3(input: x, batch: batch, geometry, transformed: transformed.pointer, bias: b, activation: activation,
                                        pool: pool, output: y, scratch: scratch)
            }
        case let .depthwise(kernel, bias, geometry, multiplier, activation, reluInput):
            kernel.withUnsafeValues { w in
                Weights.optional(bias) { b in
                    Kernels.depthwiseConv2d(input: x, batch: batch, geometry, multiplier: multiplier, kernel: w.baseAddress!, bias: b,
                                            activation: activation, reluInput: reluInput, output: y)
                }
            }
        case let .separable(depthwise, pointwise, panels, bias, geometry, units, activation):
            pointwise.withUnsafeValues { pw in
                Weights.optional(bias) { b in
                    separable(x, batch: batch, geometry, depthwise: depthwise, pointwise: pw.baseAddress!, panels: panels?.pointer, bias: b,
                              units: units, activation: activation, y, arena: arena)
                }
            }
        case let .invertedBottleneck(plan):
            plan.run(x, residual: residual(inputs), batch: batch, y, scratch: arena.scratch(plan.scratchFloats(batch: batch)))
        case let .scaledPointwise(plan):
            plan.run(x, scales: inputs[1], residual: inputs.count > 2 ? inputs[2] : nil, rows: 0..<(batch * plan.pixels), y,
                     scratch: arena.scratch(plan.chunkFloats))
        case let .pointwiseDepthwise(plan):
            let scratch = arena.scratch(plan.scratchFloats)
            for b in 0..<batch {
                plan.run(x + b * plan.inputFloats, rows: 0..<plan.geometry.outHeight, residual: residual(inputs).map { $0 + b * plan.outputFloats },
                         y + b * plan.outputFloats, scratch: scratch)
            }
        case let .dilated(conv):
            let scratch = arena.scratch(conv.scratchFloats), g = conv.geometry
            for b in 0..<batch {
                conv.run(x + b * g.inHeight * g.inWidth * g.inChannels, rows: 0..<g.outHeight, y + b * g.outHeight * g.outWidth * g.outChannels,
                         scratch: scratch)
            }
        case let .transposedConv(conv):
            let scratch = arena.scratch(conv.scratchFloats), g = conv.geometry
            for b in 0..<batch {
                conv.run(x + b * g.inHeight * g.inWidth * g.inChannels, inputRows: 0..<g.inHeight,
                         y + b * g.outHeight * g.outWidth * g.outChannels, scratch: scratch)
            }
        case let .layerNormTrailing(inner, gamma, beta, epsilon):
            Weights.optional(gamma) { g in
                Weights.optional(beta) { b in
                    Kernels.layerNormTrailing(x, y, rows: count / max(inner, 1), inner: inner, gamma: g, beta: b, epsilon: epsilon)
                }
            }
        case let .layerNormIndexed(group, parameter, groups, sampleSize, gamma, beta, epsilon):
            Weights.optional(gamma) { g in
                Weights.optional(beta) { b in
                    Kernels.layerNormIndexed(x, y, batch: batch, sampleSize: sampleSize, group: group, parameter: parameter, groups: groups,
                                             gamma: g, beta: b, epsilon: epsilon)
                }
            }
        case let .upsample(height, width, channels, factorY, factorX, bilinear, channelsFirst):
            Kernels.upsample(x, y, rows: 0..<(batch * height * factorY), height: height, width: width, channels: channels, factorY: factorY,
                             factorX: factorX, bilinear: bilinear, channelsFirst: channelsFirst)
        case let .grouped(conv):
            conv.run(x, batch: batch, conv.geometry, output: y, scratch: arena.scratch(GroupedConvolution.scratchFloats(conv.geometry)))
        case let .window(window, channels):
            Kernels.window(x, y, window, channels: channels, rows: 0..<(batch * window.outHeight))
        case let .crop(height, width, channels, top, left, outHeight, outWidth):
            Kernels.crop(x, y, batch: batch, height: height, width: width, channels: channels, top: top, left: left,
                         outHeight: outHeight, outWidth: outWidth)
        case let .merge(operation, shapes, output):
            Kernels.broadcast(inputs, shapes: shapes, output: output, batch: batch, operation: operation, into: y)
        case let .pool(geometry, isMax):
            Kernels.pool2d(input: x, batch: batch, geometry, isMax: isMax, output: y)
        case let .globalPool(pixels, channels, isMax):
            Kernels.globalPool(input: x, batch: batch, pixels: pixels, channels: channels, isMax: isMax, output: y)
        case let .zeroPad(height, width, channels, top, left, outHeight, outWidth, value):
            Kernels.zeroPad(input: x, batch: batch, height: height, width: width, channels: channels,
                            top: top, left: left, outHeight: outHeight, outWidth: outWidth, value: value, output: y)
        case let .transpose(shape, perm):
            Kernels.transpose(x, y, batch: batch, shape: shape, perm: perm)
        case let .affine(scale, shift, channels, activation):
            scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { t in
                    Kernels.affine(from: x, to: y, count: count, channels: channels, scale: s.baseAddress!, shift: t.baseAddress!,
                                   activation: activation)
                }
            }
        case let .batchNormFromBatch(gamma, beta, epsilon, channels):
            y.update(from: x, count: count)
            Kernels.batchNormalize(y, count: count, channels: channels, gamma: gamma, beta: beta, epsilon: epsilon)
        case let .activation(activation, channels):
            Kernels.activate(from: x, to: y, count: count, channels: channels, kind: activation)
        case let .scaleChannels(scaled, pixels, channels):
            Kernels.scaleChannels(inputs[scaled], scales: inputs[1 - scaled], into: y, batch: batch, pixels: pixels, channels: channels)
        case let .add(activation, channels):
            if inputs.count == 1 { y.update(from: x, count: count) } else {
                Kernels.add(x, inputs[1], into: y, count: count, channels: channels, activation: activation)
            }
            for other in inputs.dropFirst(2) { for i in 0..<count { y[i] += other[i] } }
        case .multiply:
            y.update(from: x, count: count)
            for other in inputs.dropFirst() { for i in 0..<count { y[i] *= other[i] } }
        case let .broadcast(isAdd, shapes, output):
            Kernels.broadcast(inputs, shapes: shapes, output: output, batch: batch, isAdd: isAdd, into: y)
        case let .concatenate(outer, chunks, activation):
            concatenate(inputs, chunks: chunks, activation: activation, blocks: 0..<(batch * outer), y)
        case let .slice(outer, size, start, kept):
            Kernels.slice(x, y, blocks: batch * outer, size: size, start: start, count: kept)
        case .copy:
            y.update(from: x, count: count)
        }
    }
}

extension Executor {
    /// The index of the largest value of each sample's output (first on ties).
    public func classes(of outputs: [Float]) -> [Int] {
        outputs.withUnsafeBufferPointer { classes(of: $0) }
    }

    /// The index of the largest value of each sample's output (first on ties).
    public func classes(of outputs: UnsafeBufferPointer<Float>) -> [Int] {
        stride(from: 0, to: outputs.count, by: max(outputSize, 1)).map { start in
            var best = start
            for i in start..<(start + outputSize) where outputs[i] > outputs[best] { best = i }
            return best - start
        }
    }
}
