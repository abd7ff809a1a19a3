import ModelIR

/// An inverted-residual block on a small map (MobileNetV2's blocks on 12×12, 6×6 and 3×3 maps at
/// 96×96: a 1×1 expansion, a depthwise conv, a 1×1 projection, maybe the residual Add) run as one
/// step, in parts of the expansion's channels. Part p expands into its channels, runs the
/// depthwise conv over them and multiplies them by its rows of the projection: a partial sum of
/// the projection. The block's output is the parts' sums added in pairs, act(p0 + p1) or
/// act((p0 + p1) + (p2 + p3)) (the projection's bias and the residual go into the first part's
/// sums as its GEMM stores them).
///
/// Apart, the three steps hand two maps of the expansion's width between the cores at batch 1
/// (the expansion's output channels split between two threads, the depthwise conv's rows, the
/// projection's columns): on a 6×6 map each step is a few microseconds of work and as much again
/// of moving cache lines from the other core. Here a thread keeps its part from the expansion to
/// the partial sum, and only the partial sums (the block's narrow output) cross: a thread that
/// runs both parts of a pair leaves their sum (its GEMM adds the first's sums as it stores the
/// second's), and once all parts are done each thread adds its share of the output, reading the
/// other's pair sum (one map of the output's size each way, at once).
///
/// The parts are fixed by the plan, not by the threads (`partCount`: two or four; each of four
/// threads has one, and two threads share four by work stealing, a faster core taking a part of
/// the slower one's): one thread computes them all in turn and adds them in the same order, so
/// an image's outputs are the same bit for bit on any number of threads and in any batch. They
/// are not those of the three steps apart (the projection's sums taken in parts added): the same
/// values to float32 rounding.
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

    /// The weights: the expansion (inputs × middle) prepacked and its bias, the parts', the
    /// projection's bias (added to the first part's sums, with the residual when the step has a
    /// second source).
    let expansion: Panels
    let expansionBias: AlignedWeights?
    let parts: [Part]
    let projectionBias: AlignedWeights?
    /// The plan as plain values (pointers into the weights above, the sizes and the activations):
    /// what the threads read as they run it.
    let plain: Plain

    /// The expansion's inputs; the depthwise conv over all `middle` channels (multiplier 1); the
    /// projection's width.
    var inputs: Int { plain.inputs }
    var geometry: Kernels.Spatial { plain.geometry }
    var outputs: Int { plain.outputs }

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
        self.expansion = expansion
        self.expansionBias = expansionBias.map { b in b.withUnsafeValues { v in AlignedWeights(count: v.count) { v[$0] } } }
        self.projectionBias = projectionBias.map { b in b.withUnsafeValues { v in AlignedWeights(count: v.count) { v[$0] } } }
        precondition(parts.count <= Plain.Parts.capacity, "at most four parts")
        var plainParts = Plain.Parts()
        for (p, part) in parts.enumerated() {
            plainParts[p] = Plain.Part(channels: part.channels, depthwise: part.depthwise.pointer, depthwiseBias: part.depthwiseBias?.pointer,
                                       projection: part.projection.pointer)
        }
        plain = Plain(inputs: inputs, expansion: expansion.pointer, expansionBias: self.expansionBias?.pointer,
                      expansionActivation: expansionActivation, geometry: g, depthwiseActivation: depthwiseActivation, parts: plainParts,
                      partCount: parts.count, widest: parts.map(\.channels.count).max() ?? 0, projectionBias: self.projectionBias?.pointer, outputs: outputs,
                      activation: activation)
    }

    var outputFloats: Int { plain.outputFloats }

    /// Floats of a thread's scratch for `batch` images: its work space while a part runs (the
    /// part's expansion and depthwise output), a slot of sums for each part it may run, and a map
    /// for the combine.
    func scratchFloats(batch: Int) -> Int { plain.scratchFloats(batch: batch) }

    /// The plan as plain values (pointers into the weights `InvertedBottleneck` owns, valid while it
    /// lives), which the threads copy freely: a copy of the plan itself retains its weights, and
    /// their reference counts' cache lines then cross between the cores at every part (two vCPUs
    /// of an Intel Xeon, family 6 model 207: retains and releases were 5% of the samples of
    /// MobileNetV2 96 at batch 1 on two threads).
    struct Plain {
        struct Part {
            let channels: Range<Int>
            let depthwise: UnsafePointer<Float>
            let depthwiseBias: UnsafePointer<Float>?
            let projection: UnsafePointer<Float>
        }
        /// Up to four parts in place.
        struct Parts {
            static let capacity = 4
            private var storage: (Part?, Part?, Part?, Part?) = (nil, nil, nil, nil)
            subscript(_ p: Int) -> Part {
                get {
                    switch p {
                    case 0: storage.0!
                    case 1: storage.1!
                    case 2: storage.2!
                    default: storage.3!
                    }
                }
                set {
                    switch p {
                    case 0: storage.0 = newValue
                    case 1: storage.1 = newValue
                    case 2: storage.2 = newValue
                    default: storage.3 = newValue
                    }
                }
            }
        }
        let inputs: Int
        let expansion: UnsafePointer<Float>
        let expansionBias: UnsafePointer<Float>?
        let expansionActivation: ActivationKind
        let geometry: Kernels.Spatial
        let depthwiseActivation: ActivationKind
        let parts: Parts
        let partCount: Int
        let widest: Int
        let projectionBias: UnsafePointer<Float>?
        let outputs: Int
        let activation: ActivationKind

        var outputFloats: Int { geometry.outHeight * geometry.outWidth * outputs }

        func scratchFloats(batch: Int) -> Int { workFloats(batch: batch) + (partCount + 1) * batch * outputFloats }

        /// Floats of every part's slot of sums for `batch` images.
        func slotsFloats(batch: Int) -> Int { partCount * batch * outputFloats }

        /// Floats of the work space a part of `batch` images takes while it runs.
        func workFloats(batch: Int) -> Int {
            batch * (geometry.inHeight * geometry.inWidth + geometry.outHeight * geometry.outWidth) * widest
        }

        /// Part `p`'s slot of sums in a thread's `scratch`.
        private func slot(_ p: Int, _ scratch: UnsafeMutablePointer<Float>, batch: Int) -> UnsafeMutablePointer<Float> {
            scratch + workFloats(batch: batch) + p * batch * outputFloats
        }

        /// Runs part `p` of `batch` images on thread `worker` (its `scratch`, `scratchFloats`): its
        /// partial sums (the first part's with the projection's bias and the residual added) in its
        /// slot, recorded in `ledger`. The parts go in pairs (0 and 1, 2 and 3): the second of a
        /// pair, run by the thread that ran the first, adds the first's sums as it stores its own
        /// (the pair's sum, bit for bit what the combine adds of the two), so that a pair run on
        /// one core leaves one map of sums, not two, for the other core to read.
        func run(part p: Int, worker: Int, _ x: UnsafePointer<Float>, residual: UnsafePointer<Float>?, batch: Int,
                 scratch: UnsafeMutablePointer<Float>, ledger: Ledger) {
            run(part: p, worker: worker, x, residual: residual, batch: batch, work: scratch, slots: slot(0, scratch, batch: batch),
                ledger: ledger)
        }

        /// `run(part:)` with the work space (`workFloats`) and the slots (`slotsFloats`) apart.
        func run(part p: Int, worker: Int, _ x: UnsafePointer<Float>, residual: UnsafePointer<Float>?, batch: Int,
                 work: UnsafeMutablePointer<Float>, slots: UnsafeMutablePointer<Float>, ledger: Ledger) {
            let part = parts[p], width = part.channels.count
            var g = geometry
            g.inChannels = width
            g.outChannels = width
            let expanded = work, filtered = work + batch * g.inHeight * g.inWidth * width
            let sums = slots + p * batch * outputFloats
            let pairs = p % 2 == 1 && ledger.worker(ranPart: p - 1) == worker
            Kernels.panelGEMM(input: x, rows: batch * g.inHeight * g.inWidth, inputs: inputs,
                              panels: expansion + part.channels.lowerBound * inputs, bias: expansionBias.map { $0 + part.channels.lowerBound },
                              units: width, activation: expansionActivation, output: expanded)
            Kernels.depthwiseConv2d(input: expanded, batch: batch, g, multiplier: 1, kernel: part.depthwise, bias: part.depthwiseBias,
                                    activation: depthwiseActivation, output: filtered)
            // The projection's bias and the residual go with the first part's sums; the first of a
            // pair's with the second's when one thread runs both.
            Kernels.panelGEMM(input: filtered, rows: batch * g.outHeight * g.outWidth, inputs: width, panels: part.projection,
                              bias: p == 0 ? projectionBias : nil,
                              residual: p == 0 ? residual : pairs ? UnsafePointer(sums - batch * outputFloats) : nil,
                              units: outputs, activation: .linear, output: sums)
            ledger.record(part: p, sums: sums, pairs: pairs, worker: worker)
        }

        /// Elements `range` of the output of `batch` images from the parts' sums in `ledger`: the
        /// pairs' sums added (each pair's added already or its two parts here), then the
        /// activation: act(p0 + p1), or act((p0 + p1) + (p2 + p3)), whichever threads ran the
        /// parts. `scratch`: the thread's (`scratchFloats`).
        func combine(_ ledger: Ledger, batch: Int, range: Range<Int>, _ y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
            combine(ledger, batch: batch, range: range, y, temporary: slot(partCount, scratch, batch: batch))
        }

        /// `combine` with `temporary` (`batch * outputFloats` floats) for the second pair's sum.
        func combine(_ ledger: Ledger, batch: Int, range: Range<Int>, _ y: UnsafeMutablePointer<Float>,
                     temporary: UnsafeMutablePointer<Float>) {
            guard !range.isEmpty else { return }
            let n = range.count, o = range.lowerBound
            // The sum of pair j at `into` (linear), or where it already is.
            func pair(_ j: Int, into: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
                if ledger.pairs(j) { return ledger.sums(part: 2 * j + 1) + o }
                Kernels.add(ledger.sums(part: 2 * j) + o, ledger.sums(part: 2 * j + 1) + o, into: into, count: n, channels: outputs,
                            activation: .linear)
                return UnsafePointer(into)
            }
            if partCount == 2 {
                if ledger.pairs(0) {
                    Kernels.activate(from: ledger.sums(part: 1) + o, to: y + o, count: n, channels: outputs, kind: activation)
                } else {
                    Kernels.add(ledger.sums(part: 0) + o, ledger.sums(part: 1) + o, into: y + o, count: n, channels: outputs,
                                activation: activation)
                }
                return
            }
            let first = pair(0, into: y + o), second = pair(1, into: temporary)
            Kernels.add(first, second, into: y + o, count: n, channels: outputs, activation: activation)
        }
    }

    /// Where each part's sums are, written by the thread that ran it and read by the combine: a
    /// cache line a part (its sums' address, whether they are its pair's sum, the thread that ran
    /// it), in memory the caller owns for the step (`withLedger`).
    struct Ledger {
        fileprivate let base: UnsafeMutablePointer<Int>
        fileprivate static let stride = StepParallelism.cacheLine / MemoryLayout<Int>.stride

        fileprivate func record(part p: Int, sums: UnsafePointer<Float>, pairs: Bool, worker: Int) {
            let line = base + p * Self.stride
            line[0] = Int(bitPattern: sums)
            line[1] = pairs ? 1 : 0
            line[2] = worker
        }
        /// The thread that ran part `p` (-1 if none has yet); read by a thread about to run `p + 1`,
        /// which can only find itself there once its own run of `p` is over.
        fileprivate func worker(ranPart p: Int) -> Int { base[p * Self.stride + 2] }
        fileprivate func sums(part p: Int) -> UnsafePointer<Float> { UnsafePointer(bitPattern: base[p * Self.stride])! }
        fileprivate func pairs(_ j: Int) -> Bool { base[(2 * j + 1) * Self.stride + 1] != 0 }
    }

    /// Runs `body` with an empty ledger for this block's parts.
    func withLedger<R>(_ body: (Ledger) -> R) -> R {
        Self.withLedgers(parts: [parts.count]) { body($0[0]) }
    }

    /// Runs `body` with an empty ledger for each of blocks of `parts` parts.
    private static func withLedgers<R>(parts: [Int], _ body: ([Ledger]) -> R) -> R {
        let count = parts.reduce(0, +) * Ledger.stride
        return withUnsafeTemporaryAllocation(byteCount: count * MemoryLayout<Int>.stride, alignment: StepParallelism.cacheLine) { bytes in
            let base = bytes.baseAddress!.bindMemory(to: Int.self, capacity: count)
            var ledgers: [Ledger] = [], line = 0
            for n in parts {
                for p in 0..<n { base[(line + p) * Ledger.stride + 2] = -1 }
                ledgers.append(Ledger(base: base + line * Ledger.stride))
                line += n
            }
            return body(ledgers)
        }
    }

    /// A block of a chain and its buffers: its input, the residual it adds (or nil), its output.
    struct Link {
        let plan: Plain
        let x: UnsafePointer<Float>
        let residual: UnsafePointer<Float>?
        let y: UnsafeMutablePointer<Float>
    }

    /// Consecutive blocks of one tile of `batch` images (each reading its input and residual from
    /// the blocks before it or earlier steps) on `parallel`'s workers in one hand-over: a block's
    /// parts, once all are done its combine, then the next block (`StepParallelism.run(phases:)`):
    /// the same values as the blocks one by one. `scratch(worker)`: that worker's scratch
    /// (`scratchFloats(chain:batch:workers:)`). `ended(k)`: on the caller as block k ends.
    ///
    /// On two workers (`combinesPrivately`), each adds up the whole output of every block but the
    /// last, the first worker into the block's output and the other into a copy of its own, and
    /// reads its own copy as a later block's input and residual; no worker waits for the other's
    /// combine, and its sums go in one of two sets by block, so that the next block's parts, run
    /// while the other worker still adds up this block's, do not overwrite them. Each worker reads
    /// one map of sums from the other core a block, as before, but in the combine's stream rather
    /// than in its first part's expansion. The last block's output is shared as on more workers:
    /// each worker its share of it, after every part.
    static func run(chain: [Link], batch: Int, parallel: StepParallelism, scratch: (Int) -> UnsafeMutablePointer<Float>,
                    ended: ((Int) -> Void)? = nil) {
        let workers = parallel.workers, privately = combinesPrivately(workers: workers, blocks: chain.count)
        let layout = ChainLayout(chain.map(\.plan), batch: batch, copies: privately)
        // For each block, the block before it in the chain whose output is its input, and the one
        // whose output is its residual (the latest to write there), or -1; read from the worker's
        // own copy when it combines privately.
        func producer(_ k: Int, _ p: UnsafePointer<Float>?) -> Int {
            guard privately, let p else { return -1 }
            return (0..<k).last { UnsafePointer(chain[$0].y) == p } ?? -1
        }
        let inputs = chain.indices.map { producer($0, chain[$0].x) }, residuals = chain.indices.map { producer($0, chain[$0].residual) }
        let last = chain.count - 1
        withLedgers(parts: chain.map(\.plan.partCount)) { ledgers in
            // The links are plain values: copying one touches no reference count.
            parallel.run(phases: chain.count, lag: privately ? 2 : 1, parts: { chain[$0].plan.partCount }, { k, part, worker in
                let link = chain[k], space = scratch(worker)
                func output(_ j: Int) -> UnsafePointer<Float> { UnsafePointer(worker == 0 ? chain[j].y : space + layout.copies[j]) }
                link.plan.run(part: part, worker: worker, inputs[k] < 0 ? link.x : output(inputs[k]),
                              residual: residuals[k] < 0 ? link.residual : output(residuals[k]), batch: batch, work: space,
                              slots: space + layout.slots(block: k), ledger: ledgers[k])
            }, then: { k, worker in
                let link = chain[k], space = scratch(worker), total = batch * link.plan.outputFloats, whole = privately && k < last
                link.plan.combine(ledgers[k], batch: batch,
                                  range: whole ? 0..<total : StepParallelism.range(part: worker, of: workers, count: total, align: 16),
                                  whole && worker > 0 ? space + layout.copies[k] : link.y, temporary: space + layout.temporary)
            }, ended: ended)
        }
    }

    /// Whether the workers of a chain of `blocks` blocks each add up every block's output but the
    /// last into a copy of their own (`run(chain:)`): on two, each then reads from the other core
    /// one map of sums a block, as it does when each adds up its share and reads the other's share
    /// of the next block's input. On more, each would read every other worker's sums whole.
    static func combinesPrivately(workers: Int, blocks: Int) -> Bool { workers == 2 && blocks > 1 }

    /// Floats of scratch a worker needs to run `chain` over `batch` images on `workers` workers.
    static func scratchFloats(chain: [Plain], batch: Int, workers: Int) -> Int {
        ChainLayout(chain, batch: batch, copies: combinesPrivately(workers: workers, blocks: chain.count)).floats
    }

    /// A worker's scratch for a chain (offsets in floats, each region on cache lines of its own):
    /// the work space of a part, two sets of slots of sums (a block's sums go in set k % 2), the
    /// combine's temporary, and with `copies` a copy of every block's output but the last.
    struct ChainLayout {
        private let work: Int, set: Int
        let temporary: Int
        let copies: [Int]
        let floats: Int

        init(_ chain: [Plain], batch: Int, copies withCopies: Bool) {
            let line = StepParallelism.cacheLine / MemoryLayout<Float>.stride
            func lines(_ floats: Int) -> Int { (floats + line - 1) / line * line }
            work = lines(chain.map { $0.workFloats(batch: batch) }.max() ?? 0)
            set = lines(chain.map { $0.slotsFloats(batch: batch) }.max() ?? 0)
            temporary = work + 2 * set
            var offset = temporary + lines(chain.map { batch * $0.outputFloats }.max() ?? 0), copies: [Int] = []
            for plan in chain.dropLast() where withCopies {
                copies.append(offset)
                offset += lines(batch * plan.outputFloats)
            }
            self.copies = copies
            floats = offset
        }

        /// The set of slots block `k` of the chain writes its sums in.
        func slots(block k: Int) -> Int { work + k % 2 * set }
    }

    /// The block over `batch` images on one thread: the parts in order, then the combine.
    func run(_ x: UnsafePointer<Float>, residual: UnsafePointer<Float>?, batch: Int, _ y: UnsafeMutablePointer<Float>,
             scratch: UnsafeMutablePointer<Float>) {
        withLedger { ledger in
            for p in parts.indices { plain.run(part: p, worker: 0, x, residual: residual, batch: batch, scratch: scratch, ledger: ledger) }
            plain.combine(ledger, batch: batch, range: 0..<(batch * outputFloats), y, scratch: scratch)
        }
    }
}
