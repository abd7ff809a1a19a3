import Foundation

/// How the work of one step is shared. Tiles of a batch run on their own workers when there
/// are at least as many tiles as threads; otherwise (one image on two threads) every heavy
/// step is split, by output rows or by elements, across all the pool's workers, with a
/// barrier (the pool's join) between steps.
struct StepParallelism {
    /// Nil: the step runs whole on the calling worker.
    let pool: WorkerPool?

    static let serial = StepParallelism(pool: nil)

    var workers: Int { pool?.count ?? 1 }

    /// Runs `body(worker)` on every worker and returns when all are done.
    func run(_ body: (Int) -> Void) {
        guard let pool, pool.count > 1 else { body(0); return }
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendable(body)
            pool.run { worker in box.value(worker) }
        }
    }

    /// Part `part` of `0..<count` split into `workers` ranges whose bounds are multiples of `align`.
    static func range(part: Int, of parts: Int, count: Int, align: Int = 1) -> Range<Int> {
        let units = (count + align - 1) / align
        let start = min(count, units * part / parts * align), end = min(count, units * (part + 1) / parts * align)
        return start..<end
    }
}

/// A value handed to the pool's threads that the caller vouches for (the step's closure, which
/// runs only while `StepParallelism.run` waits for it).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

extension Kernels.Spatial {
    /// Output rows `rows` of this conv or pooling as one of its own: the first input row they
    /// read and the geometry over just the input rows they read (the padding above becomes the
    /// rows before the first one; rows past the input stay padding). Nil when the rows read no
    /// input row at all (then the step is not split). Each output value is computed exactly as
    /// in the whole step.
    func rows(_ rows: Range<Int>) -> (firstInputRow: Int, geometry: Kernels.Spatial)? {
        let start = rows.lowerBound * strideY - padTop
        let end = (rows.upperBound - 1) * strideY - padTop + (kernelHeight - 1) * dilationY + 1
        let first = max(start, 0), last = min(end, inHeight)
        guard last > first, !rows.isEmpty else { return nil }
        var part = self
        part.inHeight = last - first
        part.padTop = first - start
        part.outHeight = rows.count
        return (first, part)
    }
}
