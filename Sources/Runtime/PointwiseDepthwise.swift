import ModelIR

/// A 1×1 conv and the depthwise conv that alone reads it, run together in strips of output rows
/// (MobileNet's and EfficientNet's expansion, then the depthwise conv). The expansion's output
/// (112×112×96 in MobileNetV2 and EfficientNetB0 at 224: 4.8 MB an image) never exists whole: a
/// window of its rows, kept in L2, holds what the next strip of the depthwise conv reads; each
/// row of it is computed once (the rows the next strip shares with this one are moved to the
/// window's start, not computed again). Every value is the one the two steps give apart: the
/// expansion's rows are the GEMM's rows (the same sums whatever rows go with them) and the
/// depthwise strips are `Spatial.rows`.
struct PointwiseDepthwise {
    /// The expansion: (inputs, middle) kernel prepacked, bias, activation (element-wise).
    let inputs: Int
    let panels: Panels
    let pointwiseBias: Tensor?
    let pointwiseActivation: ActivationKind
    /// The depthwise conv over the expansion's output (`geometry.inChannels` its channels).
    let depthwise: Tensor
    let bias: Tensor?
    let geometry: Kernels.Spatial
    let multiplier: Int
    let activation: ActivationKind
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
    init(inputs: Int, panels: Panels, pointwiseBias: Tensor?, pointwiseActivation: ActivationKind, depthwise: Tensor, bias: Tensor?,
          geometry g: Kernels.Spatial, multiplier: Int, activation: ActivationKind) {
        let rowFloats = max(g.inWidth * g.inChannels, 1)
        let reach = g.reach
        let strip = max(1, (max(Self.windowFloats / rowFloats, reach) - reach) / max(g.strideY, 1) + 1)
        precondition(Self.fits(g), "every output row reads the expansion")
        self.inputs = inputs
        self.panels = panels
        self.pointwiseBias = pointwiseBias
        self.pointwiseActivation = pointwiseActivation
        self.depthwise = depthwise
        self.bias = bias
        self.geometry = g
        self.multiplier = multiplier
        self.activation = activation
        self.stripRows = strip
        // The most rows any strip of at most `strip` output rows reads.
        self.windowRows = min(g.inHeight, (strip - 1) * g.strideY + reach)
    }

    /// Floats of scratch a call needs (the window).
    var scratchFloats: Int { windowRows * geometry.inWidth * geometry.inChannels }
    /// Floats of one image's input (the expansion's) and output (the depthwise conv's).
    var inputFloats: Int { geometry.inHeight * geometry.inWidth * inputs }
    var outputFloats: Int { geometry.outHeight * geometry.outWidth * geometry.outChannels }

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

    /// Output rows `rows` of one image's depthwise conv from the whole expansion (`expand`).
    func filter(_ expanded: UnsafePointer<Float>, rows: Range<Int>, _ y: UnsafeMutablePointer<Float>) {
        let g = geometry
        guard !rows.isEmpty else { return }
        guard let (first, part) = g.rows(rows) else { preconditionFailure("every output row reads the expansion") }
        depthwise.withUnsafeValues { dw in
            Weights.optional(bias) { b in
                Kernels.depthwiseConv2d(input: expanded + first * g.inWidth * g.inChannels, batch: 1, part, multiplier: multiplier,
                                        kernel: dw.baseAddress!, bias: b, activation: activation,
                                        output: y + rows.lowerBound * g.outWidth * g.outChannels)
            }
        }
    }

    /// Floats of one image's whole expansion (`expand`).
    var expansionFloats: Int { geometry.inHeight * geometry.inWidth * geometry.inChannels }

    /// Output rows `rows` of one image: `x` the expansion's input (inHeight × inWidth × inputs),
    /// `y` the depthwise output (outHeight × outWidth × outChannels).
    func run(_ x: UnsafePointer<Float>, rows: Range<Int>, _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let rowFloats = g.inWidth * g.inChannels, inputRow = g.inWidth * inputs
        // The window holds the expansion's rows first..<last at scratch.
        var first = 0, last = 0
        depthwise.withUnsafeValues { dw in
            Weights.optional(bias) { b in
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
                        Kernels.depthwiseConv2d(input: scratch, batch: 1, part, multiplier: multiplier, kernel: dw.baseAddress!, bias: b,
                                                activation: activation, output: y + start * g.outWidth * g.outChannels)
                        start = end
                    }
                }
            }
        }
    }
}
