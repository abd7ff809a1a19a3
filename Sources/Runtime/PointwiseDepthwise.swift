import ModelIR

/// A 1×1 conv and the depthwise conv that alone reads it, run together in strips of output rows
/// (MobileNet's and EfficientNet's expansion, then the depthwise conv). The expansion's output
/// (112×112×96 in MobileNetV2 and EfficientNetB0 at 224: 4.8 MB an image) never exists whole: a
/// window of its rows, kept in L2, holds what the next strip of the depthwise conv reads; each
/// row of it is computed once (the rows the next strip shares with this one are moved to the
/// window's start, not computed again). Every value is the one the two steps give apart: the
/// expansion's rows are the GEMM's rows (the same sums whatever rows go with them) and the
/// depthwise strips are `Spatial.rows`.
/// With a `projection` (a pointwise conv that alone reads the depthwise output: MobileNetV2's
/// blocks on large maps), each strip of the depthwise output goes to scratch and is projected from
/// there, maybe with a residual added: the depthwise output never exists whole either (56×56×144
/// at 224: 1.8 MB written and read back an image otherwise), and its rows are the GEMM's rows.
struct PointwiseDepthwise {
    /// The projection: (middle, units) kernel prepacked, bias and activation (a residual, the
    /// step's second source, is added before it).
    struct Projection {
        let panels: Panels
        let bias: Tensor?
        let units: Int
        let activation: ActivationKind
    }

    /// The expansion: (inputs, middle) kernel prepacked, bias, activation (element-wise).
    let inputs: Int
    let panels: Panels
    let pointwiseBias: Tensor?
    let pointwiseActivation: ActivationKind
    /// The depthwise conv over the expansion's output (`geometry` its shape, `inChannels` the expansion's).
    let depthwise: DepthwiseStage
    let geometry: Kernels.Spatial
    let projection: Projection?
    /// Output rows per strip, and the window's rows (the most input rows a strip reads).
    let stripRows: Int
    let windowRows: Int

    /// The window a strip's expansion rows are kept in: about 256 KiB of rows, at least one
    /// strip of one output row.
    static let windowFloats = 1 << 16

    /// Whether the depthwise conv of `g` can go in strips: every output row reads a row of the
    /// expansion (not so with a padding taller than the kernel; then the steps stay apart).
    static func fits(_ g: Kernels.Spatial) -> Bool {
        g.everyOutputRowReadsInput
    }

    /// The plan for `geometry` (one that `fits`).
    init(inputs: Int, panels: Panels, pointwiseBias: Tensor?, pointwiseActivation: ActivationKind, depthwise: DepthwiseStage,
         geometry g: Kernels.Spatial, projection: Projection? = nil) {
        let rowFloats = max(g.inWidth * g.inChannels, 1)
        let reach = g.reach
        let strip = max(1, (max(Self.windowFloats / rowFloats, reach) - reach) / max(g.strideY, 1) + 1)
        precondition(Self.fits(g), "every output row reads the expansion")
        self.inputs = inputs
        self.panels = panels
        self.pointwiseBias = pointwiseBias
        self.pointwiseActivation = pointwiseActivation
        self.depthwise = depthwise
        self.geometry = g
        self.projection = projection
        self.stripRows = strip
        // The most rows any strip of at most `strip` output rows reads.
        self.windowRows = min(g.inHeight, (strip - 1) * g.strideY + reach)
    }

    /// Floats of scratch a call needs (the window, and with a projection a strip of the depthwise output).
    var scratchFloats: Int { windowFloats + stripFloats }
    private var windowFloats: Int { windowRows * geometry.inWidth * geometry.inChannels }
    private var stripFloats: Int { projection == nil ? 0 : stripRows * geometry.outWidth * geometry.outChannels }
    /// Floats of scratch `filter` needs: a share of the depthwise output, with a projection.
    func filterFloats(rows: Int) -> Int { projection == nil ? 0 : rows * geometry.outWidth * geometry.outChannels }
    /// Floats of one image's input (the expansion's) and output (the depthwise conv's, or the projection's).
    var inputFloats: Int { geometry.inHeight * geometry.inWidth * inputs }
    var outputFloats: Int { geometry.outHeight * geometry.outWidth * (projection?.units ?? geometry.outChannels) }

    /// The depthwise output's rows `rows` (of `part`, at `middle`) projected into the output's
    /// rows (`y` the image's output, `residual` the image's residual), or nothing without a projection.
    private func project(_ middle: UnsafePointer<Float>, rows: Range<Int>, residual: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>) {
        guard let projection, !rows.isEmpty else { return }
        let g = geometry, offset = rows.lowerBound * g.outWidth * projection.units
        Weights.optional(projection.bias) { b in
            Kernels.panelGEMM(input: middle, rows: rows.count * g.outWidth, inputs: g.outChannels, panels: projection.panels.pointer, bias: b,
                              residual: residual.map { $0 + offset }, units: projection.units, activation: projection.activation,
                              output: y + offset)
        }
    }

    /// Whether `workers` workers sharing one image go through one map of the expansion (each
    /// expanding its share of the rows into it, then each filtering its share of the output rows
    /// from it: `expand` then `filter`, two hand-overs) rather than each running its own strips
    /// (`run`, one hand-over), whose windows compute again the rows a neighbouring worker's strips
    /// also read (`reach - stride` rows at each boundary): when those are a tenth of the map or
    /// more, and the expansion of an image is at most 1 MiB (256K floats; the strips exist to keep
    /// larger maps in L2). So EfficientNet's 5×5 on 14×14 (four rows of 14 again: 29% more
    /// expansion) and on 28×28, and MobileNetV2 224's 3×3 on 14×14 (14%); not a 3×3 on 24×24 or
    /// larger (8% or less), nor a 3×3 of stride 2 on more than 10 rows. EfficientNetB0 224 at
    /// batch 1 on two threads, AMD Zen 3, three alternating profiles: its nine such steps 245–326
    /// → 210–220 ms (5×5 on 14×14 38.5–50.3 → 28.9–31.4 ms each); MobileNetV2 224's 3×3 on 14×14
    /// did not move (two rounds).
    func sharesExpansion(workers: Int) -> Bool {
        let g = geometry
        let halo = max(g.reach - g.strideY, 0)
        return workers > 1 && g.inHeight * g.inWidth * g.inChannels <= 1 << 18 && halo * (workers - 1) * 10 >= g.inHeight
    }

    /// Rows `rows` of one image's expansion, into their place in `expanded` (inHeight × inWidth ×
    /// inChannels): the same values as in `run`'s windows (a GEMM's rows do not depend on the
    /// rows that go with them).
    func expand(_ x: UnsafePointer<Float>, rows: Range<Int>, into expanded: UnsafeMutablePointer<Float>) {
        guard !rows.isEmpty else { return }
        let g = geometry
        Weights.optional(pointwiseBias) { pb in
            Kernels.panelGEMM(input: x + rows.lowerBound * g.inWidth * inputs, rows: rows.count * g.inWidth, inputs: inputs,
                              panels: panels.pointer, bias: pb, units: g.inChannels, activation: pointwiseActivation,
                              output: expanded + rows.lowerBound * g.inWidth * g.inChannels)
        }
    }

    /// Output rows `rows` of one image's depthwise conv from the whole expansion (`expand`), and
    /// their projection (`scratch`: `filterFloats(rows:)` floats).
    func filter(_ expanded: UnsafePointer<Float>, rows: Range<Int>, residual: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
                scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        guard !rows.isEmpty else { return }
        guard let (first, part) = g.rows(rows) else { preconditionFailure("every output row reads the expansion") }
        depthwise.run(expanded + first * g.inWidth * g.inChannels, batch: 1, part,
                      output: projection == nil ? y + rows.lowerBound * g.outWidth * g.outChannels : scratch)
        project(scratch, rows: rows, residual: residual, y)
    }

    /// Floats of one image's whole expansion (`expand`).
    var expansionFloats: Int { geometry.inHeight * geometry.inWidth * geometry.inChannels }

    /// Output rows `rows` of one image: `x` the expansion's input (inHeight × inWidth × inputs),
    /// `y` the depthwise output (outHeight × outWidth × outChannels), or the projection's (and
    /// `residual` the image's residual, if any).
    func run(_ x: UnsafePointer<Float>, rows: Range<Int>, residual: UnsafePointer<Float>? = nil, _ y: UnsafeMutablePointer<Float>,
             scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let rowFloats = g.inWidth * g.inChannels, inputRow = g.inWidth * inputs
        // The window holds the expansion's rows first..<last at scratch.
        var first = 0, last = 0
        Weights.optional(pointwiseBias) { pb in
            var start = rows.lowerBound
            while start < rows.upperBound {
                let end = min(start + stripRows, rows.upperBound)
                guard let (needed, part) = g.rows(start..<end) else { preconditionFailure("planned strips read the expansion") }
                if needed >= first && needed < last {
                    // The rows this strip shares with the last one, moved to the window's start.
                    UnsafeMutableRawPointer(scratch).copyMemory(from: scratch + (needed - first) * rowFloats,
                                                                byteCount: (last - needed) * rowFloats * MemoryLayout<Float>.stride)
                } else {
                    last = needed
                }
                first = needed
                let through = needed + part.inHeight
                if through > last {
                    Kernels.panelGEMM(input: x + last * inputRow, rows: (through - last) * g.inWidth, inputs: inputs,
                                      panels: panels.pointer, bias: pb, units: g.inChannels, activation: pointwiseActivation,
                                      output: scratch + (last - first) * rowFloats)
                    last = through
                }
                let strip = scratch + windowFloats
                depthwise.run(scratch, batch: 1, part, output: projection == nil ? y + start * g.outWidth * g.outChannels : strip)
                project(strip, rows: start..<end, residual: residual, y)
                start = end
            }
        }
    }
}
