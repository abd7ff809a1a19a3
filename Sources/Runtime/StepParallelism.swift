import CKernels
import Foundation

/// How the work of one step is shared. Tiles of a batch run on their own workers when there
/// are at least as many tiles as threads; otherwise (one image on two threads) every heavy
/// step is split, by output rows or by elements, across all the pool's workers, with a
/// barrier (the pool's join) between steps.
package struct StepParallelism {
    /// Nil: the step runs whole on the calling worker.
    let pool: WorkerPool?

    package init(pool: WorkerPool?) { self.pool = pool }

    static let serial = StepParallelism(pool: nil)

    var workers: Int { pool?.count ?? 1 }

    /// Bytes of a cache line (128 on Apple's arm64 cores; 64 on x86, where 128 costs nothing).
    static let cacheLine = 128

    /// Runs `body(worker)` on every worker and returns when all are done.
    package func run(_ body: (Int) -> Void) {
        guard let pool, pool.count > 1 else { body(0); return }
        pool.run(body)
    }

    /// Runs `body(range, worker)` on every worker, `0..<count` cut at multiples of `align` in
    /// proportion to the workers' measured speeds (`WorkerPool.run(balancing:)`); on one worker,
    /// the whole range.
    func run(balancing count: Int, align: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        guard let pool, pool.count > 1 else { return body(0..<count, 0) }
        pool.run(balancing: count, align: align, body)
    }

    /// Runs `body(part, worker)` for every part in `0..<parts`, each once, on the workers: each
    /// starts on its own contiguous share (worker w the parts `range(part: w, of: workers, count:
    /// parts)`, in order) and, done with it, takes parts from the end of the others' shares. The
    /// cores of a shared machine do not run at one speed (two vCPUs under a hypervisor, AMD Zen 3:
    /// one worker's halves of the split steps took 11-23% longer in all than the other's over whole
    /// runs, which side varying between runs), so equal halves leave the faster core waiting at every
    /// join; the parts each worker starts with are the ones a static split gives it, so the rows a
    /// worker wrote in one step are mostly the ones it reads in the next.
    package func run(parts: Int, _ body: (_ part: Int, _ worker: Int) -> Void) {
        let workers = self.workers
        guard workers > 1 else { return (0..<parts).forEach { body($0, 0) } }
        // One share a cache line: a worker taking its own parts does not pull the line the other
        // takes its parts from.
        let stride = Self.cacheLine / MemoryLayout<UInt64>.stride
        withUnsafeTemporaryAllocation(byteCount: workers * Self.cacheLine, alignment: Self.cacheLine) { bytes in
            let shares = bytes.baseAddress!.bindMemory(to: UInt64.self, capacity: workers * stride)
            for w in 0..<workers {
                let share = Self.range(part: w, of: workers, count: parts)
                shares[w * stride] = UInt64(share.lowerBound) | UInt64(share.upperBound) << 32
            }
            run { worker in
                while case let part = bnk_take_front(shares + worker * stride), part >= 0 { body(Int(part), worker) }
                for k in 1..<workers {
                    let victim = shares + (worker + k) % workers * stride
                    while case let part = bnk_take_back(victim), part >= 0 { body(Int(part), worker) }
                }
            }
        }
    }

    /// `phases` rounds in one hand-over: phase p's `parts(p)` parts shared as by `run(parts:)`,
    /// then, once all are done (by whichever worker), `then(p, worker)` on every worker (a second
    /// pass that reads what all the parts wrote: a block's partial sums added, each worker its
    /// share of the output). No worker starts a part of phase p before every worker is through
    /// `then(p - lag)`: with a lag of 1 the phases follow each other whole; with 2, a worker may
    /// run phase p + 1's parts while another still runs `then(p)` (which must then read nothing
    /// phase p + 1 writes: a chain's double-buffered sums). Between them, a count of finished parts
    /// and one of finished `then`s, each on a line of its own, instead of a join and a dispatch:
    /// on two vCPUs of an Intel Xeon, family 6 model 207, a count took 0.2–0.3 µs from the last
    /// part's end to the other worker's going on, a join and the next dispatch 0.7 µs (1.5 µs
    /// before the pool's changes of the same session). `ended(p)`, if given, runs on the caller
    /// once phase p's parts are done and its own `then(p)` (with a lag of 1, every worker's) is
    /// through: a step profile's times.
    package func run(phases: Int, lag: Int = 1, parts: (_ phase: Int) -> Int, _ body: (_ phase: Int, _ part: Int, _ worker: Int) -> Void,
                     then: (_ phase: Int, _ worker: Int) -> Void, ended: ((_ phase: Int) -> Void)? = nil) {
        precondition(lag >= 1, "a phase's parts follow the `then`s of a phase before it")
        let workers = self.workers
        guard workers > 1 else {
            for phase in 0..<phases {
                for part in 0..<parts(phase) { body(phase, part, 0) }
                then(phase, 0)
                ended?(phase)
            }
            return
        }
        // A phase's shares one a cache line (a worker taking its own parts does not pull the line
        // the other takes its parts from), then the phase's count of parts done and its count of
        // `then`s done.
        let stride = Self.cacheLine / MemoryLayout<UInt64>.stride, lines = phases * (workers + 2)
        withUnsafeTemporaryAllocation(byteCount: lines * Self.cacheLine, alignment: Self.cacheLine) { bytes in
            let base = bytes.baseAddress!.bindMemory(to: UInt64.self, capacity: lines * stride)
            func shares(_ phase: Int) -> UnsafeMutablePointer<UInt64> { base + phase * (workers + 2) * stride }
            func combined(_ phase: Int) -> UnsafeMutablePointer<UInt64> { shares(phase) + (workers + 1) * stride }
            for phase in 0..<phases {
                let count = parts(phase)
                for w in 0..<workers {
                    let share = Self.range(part: w, of: workers, count: count)
                    shares(phase)[w * stride] = UInt64(share.lowerBound) | UInt64(share.upperBound) << 32
                }
                shares(phase)[workers * stride] = 0
                combined(phase).pointee = 0
            }
            run { worker in
                for phase in 0..<phases {
                    if phase >= lag { bnk_wait_done(combined(phase - lag), UInt64(workers)) }
                    if worker == 0, phase > 0 { ended?(phase - 1) }
                    let own = shares(phase), done = own + workers * stride
                    while case let part = bnk_take_front(own + worker * stride), part >= 0 {
                        body(phase, Int(part), worker)
                        bnk_count_done(done)
                    }
                    for k in 1..<workers {
                        let victim = own + (worker + k) % workers * stride
                        while case let part = bnk_take_back(victim), part >= 0 {
                            body(phase, Int(part), worker)
                            bnk_count_done(done)
                        }
                    }
                    bnk_wait_done(done, UInt64(parts(phase)))
                    then(phase, worker)
                    if phase + lag < phases { bnk_count_done(combined(phase)) }
                }
            }
            ended?(phases - 1)
        }
    }

    /// Whether the worker running `part` of `run(parts:)` from its own share goes on to `part + 1`
    /// (both in that share), so the part may prefetch the next one's first weights as it ends. A
    /// step whose weights stream from memory (a small map's 1×1 or 3×3 conv at batch 1, in four
    /// parts a worker) otherwise starts each part on weights not yet fetched: 9 × 4608 → 512 from
    /// memory in 8 parts on two threads, AMD Zen 3, medians of 6 alternating runs: 513 µs, 442 µs
    /// with the next part's first panel prefetched, 433 µs as one call a worker.
    func continues(after part: Int, of parts: Int) -> Bool {
        Self.continues(after: part, of: parts, workers: workers)
    }

    package static func continues(after part: Int, of parts: Int, workers: Int) -> Bool {
        guard part >= 0, part + 1 < parts else { return false }
        let shares = max(workers, 1)
        return (0..<shares).contains { worker in
            let share = range(part: worker, of: shares, count: parts)
            return share.contains(part) && share.contains(part + 1)
        }
    }

    /// Part `part` of `0..<count` split into `workers` ranges whose bounds are multiples of `align`.
    package static func range(part: Int, of parts: Int, count: Int, align: Int = 1) -> Range<Int> {
        let units = (count + align - 1) / align
        let start = min(count, units * part / parts * align), end = min(count, units * (part + 1) / parts * align)
        return start..<end
    }
}

extension Kernels.Spatial {
    /// Input rows one output row's window spans, first tap to last.
    var reach: Int { (kernelHeight - 1) * dilationY + 1 }

    /// Whether every output row on its own reads a row of the input (not so with a padding taller
    /// than the kernel): then any cut of the output rows gives parts that `rows` can describe.
    /// The windows move down with the rows and are all as tall, so when the first and the last
    /// read the input, every one between does (checked per call of a split step: no loop).
    var everyOutputRowReadsInput: Bool {
        outHeight > 0 && rows(0..<1) != nil && rows((outHeight - 1)..<outHeight) != nil
    }

    /// Output rows `rows` of this conv or pooling as one of its own: the first input row they
    /// read and the geometry over just the input rows they read (the padding above becomes the
    /// rows before the first one; rows past the input stay padding). Nil when the rows read no
    /// input row at all (then the step is not split). Each output value is computed exactly as
    /// in the whole step.
    func rows(_ rows: Range<Int>) -> (firstInputRow: Int, geometry: Kernels.Spatial)? {
        let start = rows.lowerBound * strideY - padTop
        let end = (rows.upperBound - 1) * strideY - padTop + reach
        let first = max(start, 0), last = min(end, inHeight)
        guard last > first, !rows.isEmpty else { return nil }
        var part = self
        part.inHeight = last - first
        part.padTop = first - start
        part.outHeight = rows.count
        return (first, part)
    }
}
