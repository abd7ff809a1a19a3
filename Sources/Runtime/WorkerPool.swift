import CKernels
import Foundation
import Synchronization

/// A fixed set of threads that run one job at a time, each job on every
/// thread (the caller is worker 0, so `count - 1` threads are started).
///
/// Between jobs the threads spin briefly before sleeping, so back-to-back
/// calls (a batch of 64 images is tens of microseconds of work) do not pay
/// a thread wake-up each time, as `DispatchQueue.concurrentPerform` does.
package final class WorkerPool: @unchecked Sendable {
    package let count: Int

    /// Bumped once per job (and once to stop); workers run a job when it changes.
    private let generation = Atomic<Int>(0)
    /// Workers (other than the caller) still running the current job.
    private let pending = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let sleep = NSCondition()
    /// Written by the submitter before the generation is bumped (release) and
    /// read by workers after they see the bump (acquire).
    private var job: (@Sendable (Int) -> Void)?
    private let submit = NSLock()

    /// Spin iterations (each a PAUSE, tens of cycles) before a waiting thread sleeps: tens of microseconds.
    private static let spins = 2_000

    package init(count: Int) {
        self.count = max(1, count)
        for worker in 1..<self.count {
            // Each thread keeps the pool alive until `shutdown` lets it return.
            let thread = Thread { self.loop(worker: worker) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Stops the threads (they exit after their current wait).
    package func shutdown() {
        stopping.store(true, ordering: .releasing)
        sleep.lock()
        generation.add(1, ordering: .releasing)
        sleep.broadcast()
        sleep.unlock()
    }

    /// Runs `body(worker)` for every worker in 0..<count, in parallel, and returns when all are done.
    package func run(_ body: @escaping @Sendable (Int) -> Void) {
        if count == 1 { body(0); return }
        submit.lock()
        defer { submit.unlock() }
        job = body
        pending.store(count - 1, ordering: .relaxed)
        sleep.lock()
        generation.add(1, ordering: .releasing)
        sleep.broadcast()
        sleep.unlock()
        body(0)
        var spun = 0
        while pending.load(ordering: .acquiring) != 0 {
            if spun < Self.spins { bnk_cpu_relax(); spun += 1 } else { sched_yield() }
        }
        job = nil
    }

    private func loop(worker: Int) {
        var seen = 0
        while true {
            var spun = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen && spun < Self.spins {
                bnk_cpu_relax()
                spun += 1
                current = generation.load(ordering: .acquiring)
            }
            if current == seen {
                sleep.lock()
                current = generation.load(ordering: .acquiring)
                while current == seen {
                    sleep.wait()
                    current = generation.load(ordering: .acquiring)
                }
                sleep.unlock()
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            job?(worker)
            pending.subtract(1, ordering: .releasing)
        }
    }
}
