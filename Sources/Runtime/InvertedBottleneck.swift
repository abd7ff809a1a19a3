import ModelIR

/// An inverted-residual block on a small map (MobileNetV2's blocks on 12×12, 6×6 and 3×3 maps at
/// 96×96: a 1×1 expansion, a depthwise conv, a 1×1 projection, maybe the residual Add) run as one
/// step, in parts of the expansion's channels. Part p expands into its channels, runs the
/// depthwise conv over them and multiplies them by its rows of the projection: a partial sum of
/// the projection. The block's output is the parts' sums added, then the activation (the
/// projection's bias and the residual go into the first part's sums as its GEMM stores them).
///
/// Apart, the three steps hand two maps of the expansion's width between the cores at batch 1
/// (the expansion's output channels split between two threads, the depthwise conv's rows, the
/// projection's columns): on a 6×6 map each step is a few microseconds of work and as much again
/// of moving cache lines from the other core. Here a thread keeps its part from the expansion to
/// the partial sum, and only the partial sums (the block's narrow output) cross.
///
/// The parts are fixed by the plan, not by the threads (`partCount`: two or four; each of four
/// threads has one, and two threads share four by work stealing, a faster core taking a part of
/// the slower one's): one thread computes them all in turn and
/// adds them the same way, so an image's outputs are the same bit for bit on any number of
/// threads and in any batch. They are not those of the three steps apart (the projection's sums
/// taken in parts added): the same values to float32 rounding.
struct InvertedBottleneck {
    /// One part of the expansion's channels and everything that reads only them.
    struct Part {
        /// The expansion's channels of this part (a multiple of the panel width from the start).
        let channels: Range<Int>
        /// The depthwise kernel (kh, kw, channels.count) and bias of these channels.
        let depthwise: AlignedWeights
        let depthwiseBias: AlignedWeights?
        /// The projection's rows of these channels, prepacked (channels.count × outputs).
        let projection: Panels
    }

    /// The expansion: (inputs × middle) prepacked, its bias and (element-wise) activation.
    let inputs: Int
    let expansion: Panels
    let expansionBias: Tensor?
    let expansionActivation: ActivationKind
    /// The depthwise conv over all `middle` channels (multiplier 1) and its element-wise activation.
    let geometry: Kernels.Spatial
    let depthwiseActivation: ActivationKind
    let parts: [Part]
    /// The projection: its bias (added to the first part's sums, with the residual when the step has
    /// a second source), its width, and the activation after (element-wise).
    let projectionBias: Tensor?
    let outputs: Int
    let activation: ActivationKind

    /// The largest map (pixels) a block runs this way on: 16×16; larger maps split by rows well.
    static let largestMap = 256

    /// How many parts `panels` panels of expansion channels go in: four of at least two panels each
    /// (32 channels: a part's GEMMs with fewer columns or inputs spend more on their edges than on
    /// multiply-adds), else two. Not three: two threads would run two of three equal parts after
    /// each other on one of them.
    static func partCount(panels: Int) -> Int { panels >= 8 ? 4 : 2 }

    /// Whether the parts pay: each keeps two maps of its channels on its core (the expansion's and
    /// the depthwise conv's output) and costs a map of partial sums, added to the others after; a
    /// block whose expansion is no wider than its partial sums (`partCount - 1` maps of `outputs`
    /// channels) runs faster as its three steps. MobileNet's 512 → 512 → 512 and 512 → 1024 → 1024
    /// blocks at 10×10 and 5×5 (160×160 input), AMD Zen 4, best of 5 passes a process, 5–7
    /// alternating processes, with the rule over without (median): batch 1 one thread 1.041 (AVX2
    /// 1.040), batch 16 1.031 (1.049), two threads batch 1 0.996 (0.990), batch 16 1.074 (1.134).
    static func pays(middle: Int, outputs: Int) -> Bool {
        2 * middle > (partCount(middle: middle) - 1) * outputs
    }

    /// The parts a block of `middle` expansion channels goes in (`partCount(panels:)` of its panels).
    static func partCount(middle: Int) -> Int {
        partCount(panels: (middle + Kernels.panelWidth - 1) / Kernels.panelWidth)
    }

    /// Whether a block of these sizes can run this way: a small map, at least two panels of
    /// expansion channels, a depthwise conv with multiplier 1 whose every output row reads the map.
    static func fits(_ g: Kernels.Spatial, multiplier: Int) -> Bool {
        multiplier == 1 && g.inHeight * g.inWidth <= largestMap && g.inChannels >= 2 * Kernels.panelWidth
            && PointwiseDepthwise.fits(g)
    }

    /// The plan: `expansion` (inputs × middle) and `projection` (middle × outputs) row-major Keras
    /// kernels, `depthwise` (kh, kw, middle).
    init(inputs: Int, expansion: Panels, expansionBias: Tensor?, expansionActivation: ActivationKind,
         depthwise: UnsafePointer<Float>, depthwiseBias: [Float]?, geometry g: Kernels.Spatial,
         depthwiseActivation: ActivationKind, projection: UnsafePointer<Float>, projectionBias: Tensor?, outputs: Int,
         activation: ActivationKind) {
        precondition(Self.fits(g, multiplier: 1), "a small map and at least two panels of channels")
        let middle = g.inChannels, taps = g.kernelHeight * g.kernelWidth
        let count = Self.partCount(middle: middle)
        parts = (0..<count).map { p in
            let channels = StepParallelism.range(part: p, of: count, count: middle, align: Kernels.panelWidth)
            let width = channels.count
            let kernel = AlignedWeights(count: taps * width) { depthwise[$0 / width * middle + channels.lowerBound + $0 % width] }
            return Part(channels: channels, depthwise: kernel,
                        depthwiseBias: depthwiseBias.map { b in AlignedWeights(count: width) { b[channels.lowerBound + $0] } },
                        projection: Panels(projection + channels.lowerBound * outputs, rows: channels.count, columns: outputs))
        }
        self.inputs = inputs
        self.expansion = expansion
        self.expansionBias = expansionBias
        self.expansionActivation = expansionActivation
        self.geometry = g
        self.depthwiseActivation = depthwiseActivation
        self.projectionBias = projectionBias
        self.outputs = outputs
        self.activation = activation
    }

    var outputFloats: Int { geometry.outHeight * geometry.outWidth * outputs }

    /// Floats of the parts' partial sums of `batch` images (all parts', one after another).
    func sumsFloats(batch: Int) -> Int { parts.count * batch * outputFloats }
    /// Scratch floats a part of `batch` images takes while it runs (its expansion and depthwise output).
    func workFloats(batch: Int) -> Int {
        let width = parts.map(\.channels.count).max() ?? 0
        return batch * (geometry.inHeight * geometry.inWidth + geometry.outHeight * geometry.outWidth) * width
    }

    /// Part `p`'s partial sums of `batch` images in `sums` (the first part's with the projection's
    /// bias and the residual added), using `work` (`workFloats`) in between.
    func runPart(_ p: Int, _ x: UnsafePointer<Float>, residual: UnsafePointer<Float>?, batch: Int, sums: UnsafeMutablePointer<Float>,
                 work: UnsafeMutablePointer<Float>) {
        let part = parts[p], width = part.channels.count
        var g = geometry
        g.inChannels = width
        g.outChannels = width
        let expanded = work, filtered = work + batch * g.inHeight * g.inWidth * width
        let sums = sums + p * batch * outputFloats
        Weights.optional(expansionBias) { eb in
            Kernels.panelGEMM(input: x, rows: batch * g.inHeight * g.inWidth, inputs: inputs,
                              panels: expansion.pointer + part.channels.lowerBound * inputs, bias: eb.map { $0 + part.channels.lowerBound },
                              units: width, activation: expansionActivation, output: expanded)
        }
        Kernels.depthwiseConv2d(input: expanded, batch: batch, g, multiplier: 1, kernel: part.depthwise.pointer,
                                bias: part.depthwiseBias?.pointer, activation: depthwiseActivation, output: filtered)
        // The projection's bias and the residual go with the first part's sums.
        Weights.optional(p == 0 ? projectionBias : nil) { pb in
            Kernels.panelGEMM(input: filtered, rows: batch * g.outHeight * g.outWidth, inputs: width, panels: part.projection.pointer,
                              bias: pb, residual: p == 0 ? residual : nil, units: outputs, activation: .linear, output: sums)
        }
    }

    /// Whether the parts' sums of a split step (`floats` of output) are added by the caller alone
    /// rather than shared by the workers: up to 8192 floats (every block of MobileNetV2 at 96 and
    /// 224). A shared addition is one more hand-over to the workers, and each of them reads the
    /// other's sums from its core either way. MobileNetV2 96 at batch 1 on two threads, AMD Zen 3,
    /// 3 alternating processes of 6 passes each, the time of the addition per block (12×12×32,
    /// 6×6×64 and 96, 3×3×160 and 320) 4.1–5.5 → 2.2–3.7 µs and the network 862, 877, 923 →
    /// 945, 958, 960 img/s; MobileNetV2 224's 7×7×160 5.5 → 4.7 µs. (One thread: 0.8–1.3 µs.)
    static func combinesAlone(floats: Int) -> Bool { floats <= 8192 }

    /// Elements `range` of the output: the parts' sums added in order, then the activation.
    func combine(_ sums: UnsafePointer<Float>, batch: Int, range: Range<Int>, _ y: UnsafeMutablePointer<Float>) {
        guard !range.isEmpty else { return }
        let stride = batch * outputFloats, last = parts.count - 1
        var sum = sums + range.lowerBound
        for p in 1...last {
            Kernels.add(sum, sums + p * stride + range.lowerBound, into: y + range.lowerBound, count: range.count, channels: outputs,
                        activation: p == last ? activation : .linear)
            sum = UnsafePointer(y + range.lowerBound)
        }
    }
}
