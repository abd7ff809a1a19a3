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
        run(parts: parts, body, joined: false) { _ in }
    }

    /// `run(parts:)`, then, once every part is done (by whichever worker), `then(worker)` on each
    /// worker in the same hand-over: a second phase that reads what all the parts wrote (a block's
    /// partial sums added, each worker its share of the output) without a join and a second
    /// dispatch between the two.
    package func run(parts: Int, _ body: (_ part: Int, _ worker: Int) -> Void, then: (_ worker: Int) -> Void) {
        run(parts: parts, body, joined: true, then: then)
    }

    private func run(parts: Int, _ body: (_ part: Int, _ worker: Int) -> Void, joined: Bool, then: (_ worker: Int) -> Void) {
        let workers = self.workers
        guard workers > 1 else {
            (0..<parts).forEach { body($0, 0) }
            if joined { then(0) }
            return
        }
        // One share a cache line: a worker taking its own parts does not pull the line the other
        // takes its parts from. The count of parts done on a line of its own after them.
        let stride = Self.cacheLine / MemoryLayout<UInt64>.stride
        withUnsafeTemporaryAllocation(byteCount: (workers + 1) * Self.cacheLine, alignment: Self.cacheLine) { bytes in
            let shares = bytes.baseAddress!.bindMemory(to: UInt64.self, capacity: (workers + 1) * stride)
            let done = shares + workers * stride
            done.pointee = 0
            for w in 0..<workers {
                let share = Self.range(part: w, of: workers, count: parts)
                shares[w * stride] = UInt64(share.lowerBound) | UInt64(share.upperBound) << 32
            }
            run { worker in
                func take(_ part: Int32) {
                    body(Int(part), worker)
                    if joined { bnk_count_done(done) }
                }
                while case let part = bnk_take_front(shares + worker * stride), part >= 0 { take(part) }
                for k in 1..<workers {
                    let victim = shares + (worker + k) % workers * stride
                    while case let part = bnk_take_back(victim), part >= 0 { take(part) }
                }
                if joined {
                    bnk_wait_done(done, UInt64(parts))
                    then(worker)
                }
            }
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
