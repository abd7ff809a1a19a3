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
                pool.run { worker in
                    if job % 7 == 0 { usleep(50) }  // some jobs outlast the spin, so workers also sleep and wake
                    perWorker.withLock { $0[worker] += 1 }
                }
                let counts = perWorker.withLock { $0 }
                XCTAssertEqual(counts, [Int](repeating: job, count: count), "after job \(job), \(count) workers")
                if counts != [Int](repeating: job, count: count) { return }
            }
        }
    }
}
