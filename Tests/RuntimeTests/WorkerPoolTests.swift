import Foundation
import Runtime
import Synchronization
import XCTest

final class WorkerPoolTests: XCTestCase {
    /// Every job runs exactly once on every worker, and `run` returns only after all of them finished.
    func testEveryJobRunsOnceOnEveryWorkerAndRunWaitsForAll() {
        for count in [1, 2, 3, 5] {
            let pool = WorkerPool(count: count)
            defer { pool.shutdown() }
            let perWorker = Mutex([Int](repeating: 0, count: count))
            for job in 1...1_000 {
                // Some jobs outlast the 200 µs spin (the caller waits on in sched_yield), and some
                // gaps between jobs too (the workers fall asleep and are woken by the next job).
                if job % 50 == 0 { usleep(400) }
                pool.run { worker in
                    if job % 70 == 0 { usleep(400) }
                    perWorker.withLock { $0[worker] += 1 }
                }
                let counts = perWorker.withLock { $0 }
                XCTAssertEqual(counts, [Int](repeating: job, count: count), "after job \(job), \(count) workers")
                if counts != [Int](repeating: job, count: count) { return }
            }
        }
    }

    /// `StepParallelism.run(parts:)` runs every part exactly once, for any count of workers and parts.
    func testEveryPartRunsExactlyOnce() {
        for count in [1, 2, 3, 5] {
            let pool = WorkerPool(count: count)
            defer { pool.shutdown() }
            for parts in [0, 1, 2, 3, 4, 7, 8, 64, 1_000] {
                let runs = Mutex([Int](repeating: 0, count: parts))
                StepParallelism(pool: pool).run(parts: parts) { part, worker in
                    XCTAssert((0..<count).contains(worker))
                    runs.withLock { $0[part] += 1 }
                }
                XCTAssertEqual(runs.withLock { $0 }, [Int](repeating: 1, count: parts), "\(parts) parts, \(count) workers")
            }
        }
    }

    /// A worker held up in its first part: the other runs its own share in order, then takes the
    /// held-up worker's remaining parts from the end of that share.
    func testAFinishedWorkerTakesTheRestOfAHeldUpWorkersShare() {
        let pool = WorkerPool(count: 2)
        defer { pool.shutdown() }
        let order = Mutex([[Int]](repeating: [], count: 2))
        let started = Atomic<Bool>(false), done = Atomic<Int>(0)
        func wait(until condition: () -> Bool) {
            let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
            while !condition() && DispatchTime.now().uptimeNanoseconds < deadline { usleep(100) }
        }
        StepParallelism(pool: pool).run(parts: 16) { part, worker in
            order.withLock { $0[worker].append(part) }
            if worker == 1 {
                // Held up until worker 0 has run every other part (or 10 s).
                started.store(true, ordering: .sequentiallyConsistent)
                wait { done.load(ordering: .sequentiallyConsistent) == 15 }
            } else {
                wait { started.load(ordering: .sequentiallyConsistent) }
                done.add(1, ordering: .sequentiallyConsistent)
            }
        }
        XCTAssertEqual(order.withLock { $0[1] }, [8])
        XCTAssertEqual(order.withLock { $0[0] }, Array(0..<8) + Array((9..<16).reversed()))
    }
}
