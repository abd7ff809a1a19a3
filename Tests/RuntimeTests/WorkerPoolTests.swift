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
}
