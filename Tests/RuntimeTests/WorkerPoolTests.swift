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

    /// Jobs submitted as the workers fall asleep (gaps around the 200 µs spin window) all run: a
    /// worker going to sleep as a job is submitted either sees it or is woken for it (the pool
    /// signals only when a worker is asleep). A lost wake-up hangs `run`; the jobs run on a thread
    /// of their own so that a hang fails the test instead of stopping it.
    func testJobsSubmittedAsWorkersFallAsleepAllRun() {
        for count in [2, 3] {
            let pool = WorkerPool(count: count)
            let ran = Atomic<Int>(0), finished = DispatchSemaphore(value: 0)
            let jobs = 600
            let thread = Thread {
                var generator = SystemRandomNumberGenerator()
                for _ in 0..<jobs {
                    usleep(UInt32.random(in: 150...260, using: &generator))
                    pool.run { _ in ran.add(1, ordering: .relaxed) }
                }
                finished.signal()
            }
            thread.start()
            XCTAssertEqual(finished.wait(timeout: .now() + 60), .success, "\(count) workers: run did not return (a lost wake-up)")
            XCTAssertEqual(ran.load(ordering: .relaxed), jobs * count, "\(count) workers")
            pool.shutdown()
        }
    }

    /// `run(balancing:)` cuts `0..<count` into one contiguous range a worker, in order, bounded at
    /// multiples of `align` (but the end), each in proportion to the worker's share.
    func testBalancedRangesCoverTheWorkOnceInProportionToTheShares() {
        for shares in [[1.0, 1], [0.2, 0.8], [0.7, 0.3], [0.2, 0.5, 0.3], [1, 1, 1, 1, 1]] {
            let pool = WorkerPool(count: shares.count)
            defer { pool.shutdown() }
            let total = shares.reduce(0, +)
            for count in [0, 1, 7, 16, 100, 1001] {
                for align in [1, 12, 16] {
                    // Set before every job: under other load a job of five threads on two cores can
                    // take over 20 µs, and the pool then moves the shares toward the speeds it saw
                    // (a fresh-clone CI run: equal shares of 1001 cut 206, 200, 241, 193, 161).
                    pool.balance = shares
                    let ranges = Mutex([Range<Int>?](repeating: nil, count: shares.count))
                    pool.run(balancing: count, align: align) { range, worker in ranges.withLock { $0[worker] = range } }
                    let found = ranges.withLock { $0 }.map { $0 ?? 0..<0 }
                    let label = "shares \(shares), count \(count), align \(align): \(found)"
                    XCTAssertEqual(found.flatMap { Array($0) }, Array(0..<count), label)
                    for (w, range) in found.enumerated() {
                        if range.upperBound < count { XCTAssertEqual(range.upperBound % align, 0, label) }
                        XCTAssertLessThanOrEqual(abs(Double(range.count) - shares[w] / total * Double(count)), Double(2 * align), label)
                    }
                }
            }
            // Whatever the jobs' times, the shares stay a partition of the work.
            XCTAssertEqual(pool.balance.reduce(0, +), 1, accuracy: 1e-9)
        }
    }

    /// The shares follow the workers' speeds: with worker 1 four times as slow per unit of work
    /// (sleeping 4 µs a unit against 1 µs), worker 0's share grows from a half to over 0.65;
    /// with both as fast, it comes back to a half.
    func testBalancedSharesFollowTheWorkersSpeeds() {
        let pool = WorkerPool(count: 2)
        defer { pool.shutdown() }
        for _ in 0..<25 {
            pool.run(balancing: 1_000) { range, worker in usleep(UInt32(range.count * (worker == 0 ? 1 : 4))) }
        }
        XCTAssertGreaterThan(pool.balance[0], 0.65, "\(pool.balance)")
        for _ in 0..<40 {
            pool.run(balancing: 1_000) { range, _ in usleep(UInt32(range.count * 2)) }
        }
        XCTAssertEqual(pool.balance[0], 0.5, accuracy: 0.1, "\(pool.balance)")
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

    /// `StepParallelism.run(phases:)` runs every part of every phase exactly once; a phase's `then`
    /// runs once on each worker, after every part of that phase; nothing of phase p + lag (a part
    /// or a `then`) runs before every worker's `then` of phase p; `ended` runs once a phase, in
    /// order, after the first worker's `then` of the phase (with a lag of 1, after every worker's;
    /// the other workers may be on the next phase by then).
    func testPhasesRunInOrderWithEveryPartOnce() {
        for count in [1, 2, 3] {
            let pool = WorkerPool(count: count)
            defer { pool.shutdown() }
            for lag in [1, 2] {
                let partCounts = [4, 0, 2, 7, 1, 3]
                // Events in order: (phase, part) for a part, (phase, -1 - worker) for a `then`, (phase, -100) for `ended`.
                let events = Mutex([(Int, Int)]())
                StepParallelism(pool: pool).run(phases: partCounts.count, lag: lag, parts: { partCounts[$0] }, { phase, part, _ in
                    events.withLock { $0.append((phase, part)) }
                }, then: { phase, worker in
                    events.withLock { $0.append((phase, -1 - worker)) }
                }, ended: { phase in
                    events.withLock { $0.append((phase, -100)) }
                })
                let all = events.withLock { $0 }
                let context = "\(count) workers, lag \(lag): \(all)"
                for (phase, parts) in partCounts.enumerated() {
                    let mine = all.enumerated().filter { $0.element.0 == phase }
                    XCTAssertEqual(mine.filter { $0.element.1 >= 0 }.map(\.element.1).sorted(), Array(0..<parts), "phase \(phase), \(context)")
                    let thens = mine.filter { (-count ... -1).contains($0.element.1) }
                    XCTAssertEqual(thens.map { -1 - $0.element.1 }.sorted(), Array(0..<count), "phase \(phase), \(context)")
                    let lastPart = mine.filter { $0.element.1 >= 0 }.map(\.offset).max() ?? -1
                    XCTAssert(thens.allSatisfy { $0.offset > lastPart }, "a then before a part of its phase: \(context)")
                    let ended = mine.filter { $0.element.1 == -100 }.map(\.offset)
                    XCTAssertEqual(ended.count, 1)
                    let before = lag == 1 ? thens : thens.filter { $0.element.1 == -1 }
                    XCTAssert(before.allSatisfy { $0.offset < ended[0] }, "ended before a then: \(context)")
                    let later = all.enumerated().filter { $0.element.0 >= phase + lag }.map(\.offset).min() ?? all.count
                    XCTAssert(thens.allSatisfy { $0.offset < later }, "phase \(phase + lag) began early: \(context)")
                }
                XCTAssertEqual(all.filter { $0.1 == -100 }.map(\.0), Array(partCounts.indices), "ended out of order: \(context)")
            }
        }
    }

    /// A split step's parts go evenly to the workers: a multiple of the worker count, at least one
    /// each and at most four, each of at least 256 output pixels (rows) or four panels (columns)
    /// when there are enough. Three equal parts on two workers would leave one running two of them
    /// after each other (Xception's 31-row maps at 128x128: 1.48x on two threads).
    func testSplitStepsCutIntoWholeSharesOfParts() {
        for workers in 1...5 {
            for height in [1, 2, 3, 7, 16, 31, 56, 112, 224] {
                for width in [1, 7, 31, 112] {
                    let parts = Executor.rowParts(outHeight: height, outWidth: width, align: 1, workers: workers)
                    XCTAssertEqual(parts % workers, 0, "\(height)x\(width) rows on \(workers) workers: \(parts) parts")
                    XCTAssert((workers...(4 * workers)).contains(parts), "\(height)x\(width), \(workers) workers: \(parts)")
                    if parts > workers { XCTAssertGreaterThanOrEqual(height / parts * width, 256 - width, "\(height)x\(width)") }
                }
            }
            for units in [16, 64, 160, 320, 728, 1000, 2048] {
                let parts = Executor.columnParts(units, workers: workers)
                XCTAssertEqual(parts % workers, 0, "\(units) columns on \(workers) workers: \(parts) parts")
                XCTAssert((workers...(4 * workers)).contains(parts), "\(units) columns, \(workers) workers: \(parts)")
                if parts > workers { XCTAssertGreaterThanOrEqual(units / parts, 4 * 16 - 16, "\(units) columns") }
            }
        }
        XCTAssertEqual(Executor.rowParts(outHeight: 31, outWidth: 31, align: 1, workers: 2), 2)
        XCTAssertEqual(Executor.rowParts(outHeight: 112, outWidth: 112, align: 1, workers: 2), 8)
        XCTAssertEqual(Executor.columnParts(320, workers: 2), 4)
        XCTAssertEqual(Executor.wholeShares(7, workers: 3), 6)
        XCTAssertEqual(Executor.wholeShares(1, workers: 3), 3)
    }

    /// A part prefetches the next part's first weights only when its worker goes on to that part
    /// from its own share (`run(parts:)` gives worker w the parts `range(part: w, ...)`, front to
    /// back): never across two workers' shares, never past the last part.
    func testAPartContinuesOnlyToTheNextPartOfItsWorkersShare() {
        func continuing(_ parts: Int, _ workers: Int) -> [Int] {
            (0..<parts).filter { StepParallelism.continues(after: $0, of: parts, workers: workers) }
        }
        XCTAssertEqual(continuing(8, 2), [0, 1, 2, 4, 5, 6])
        XCTAssertEqual(continuing(4, 2), [0, 2])
        XCTAssertEqual(continuing(2, 2), [])
        XCTAssertEqual(continuing(3, 1), [0, 1])
        XCTAssertEqual(continuing(7, 3), [0, 2, 4, 5])
        XCTAssertEqual(continuing(1, 1), [])
        XCTAssertEqual(continuing(0, 2), [])
        for workers in 1...5 {
            for parts in 0...40 {
                let shares = (0..<workers).map { StepParallelism.range(part: $0, of: workers, count: parts) }.filter { !$0.isEmpty }
                XCTAssertEqual(continuing(parts, workers), shares.flatMap { $0.dropLast() }, "\(parts) parts, \(workers) workers")
            }
        }
    }

    /// A batch's tiles: each worker's samples differ from another's by one at most, every tile holds
    /// at most the tile size, a worker's tiles are as few and as even as they go, and together the workers'
    /// tiles cover the batch once, in order.
    func testBatchTilesShareTheSamplesEvenly() {
        for workers in 1...4 {
            for most in [1, 2, 3, 5, 8] {
                for batch in workers...40 {
                    let tiles = (0..<workers).map { Executor.tiles(worker: $0, of: workers, batch: batch, most: most) }
                    let counts = tiles.map { $0.reduce(0) { $0 + $1.count } }
                    XCTAssertLessThanOrEqual(counts.max()! - counts.min()!, 1, "batch \(batch), tiles of \(most), \(workers) workers: \(counts)")
                    XCTAssertEqual(tiles.joined().flatMap { Array($0) }, Array(0..<batch), "batch \(batch), tiles of \(most)")
                    for own in tiles {
                        let sizes = own.map(\.count)
                        XCTAssertEqual(sizes.count, (sizes.reduce(0, +) + most - 1) / most, "as few tiles as fit: \(sizes)")
                        XCTAssert(sizes.allSatisfy { (1...most).contains($0) }, "batch \(batch), tiles of \(most): \(sizes)")
                        if let large = sizes.max(), let small = sizes.min() { XCTAssertLessThanOrEqual(large - small, 1, "\(sizes)") }
                    }
                }
            }
        }
        // MobileNetV2 224's tiles of 3 at batch 16 on two threads: 8 samples each (were 9 and 7).
        XCTAssertEqual(Executor.tiles(worker: 0, of: 2, batch: 16, most: 3), [0..<2, 2..<5, 5..<8])
        XCTAssertEqual(Executor.tiles(worker: 1, of: 2, batch: 16, most: 3), [8..<10, 10..<13, 13..<16])
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

    /// A batch for workers to claim: tiles covering it once in order, in rounds of one a worker,
    /// each round's tiles of one size, none over the cache plan's tile nor under a quarter of it
    /// (but the batch's last), shrinking; dealt in turn, the workers' shares differ by at most a
    /// tile of the last round.
    func testTileQueueCutsTheBatchInShrinkingRoundsOfOneTileAWorker() {
        for workers in 1...4 {
            for most in [1, 2, 3, 5, 8, 256] {
                let least = max(1, most / 4)
                for batch in 1...300 {
                    let tiles = TileQueue(batch: batch, workers: workers, most: most).tiles, sizes = tiles.map(\.count)
                    let label = "batch \(batch), tiles of at most \(most), \(workers) workers: \(sizes)"
                    XCTAssertEqual(tiles.flatMap { Array($0) }, Array(0..<batch), label)
                    XCTAssert(sizes.allSatisfy { $0 <= most }, label)
                    XCTAssert(sizes.dropLast().allSatisfy { $0 >= least }, label)
                    XCTAssertEqual(sizes, sizes.sorted(by: >), label)
                    let rounds = stride(from: 0, to: sizes.count, by: workers).map { Array(sizes[$0..<min(sizes.count, $0 + workers)]) }
                    for (r, round) in rounds.enumerated() {
                        // The batch's last tile takes what is left.
                        XCTAssertLessThanOrEqual(Set(r == rounds.count - 1 ? round.dropLast() : round[...]).count, 1, "round \(r): \(label)")
                    }
                    let shares = (0..<workers).map { w in stride(from: w, to: sizes.count, by: workers).reduce(0) { $0 + sizes[$1] } }
                    XCTAssertLessThanOrEqual(shares.max()! - shares.min()!, rounds.last!.max()!, label)
                    XCTAssertLessThanOrEqual(sizes.count, workers * (2 + (batch + least - 1) / least), label)
                }
            }
        }
        // MobileNetV2 96 at batch 16 on two threads (tiles of 8 by the cache plan), and MobileNetV2 224 (tiles of 3).
        XCTAssertEqual(TileQueue(batch: 16, workers: 2, most: 8).tiles.map(\.count), [6, 6, 2, 2])
        XCTAssertEqual(TileQueue(batch: 16, workers: 2, most: 3).tiles.map(\.count), [3, 3, 3, 3, 2, 2])
        XCTAssertEqual(TileQueue(batch: 64, workers: 2, most: 8).tiles.map(\.count), [8, 8, 8, 8, 8, 8, 6, 6, 2, 2])
        XCTAssertEqual(TileQueue(batch: 1, workers: 2, most: 8).tiles, [0..<1])
    }

    /// A worker held up on the tile it claimed: the other claims and runs every other tile, each
    /// tile runs once.
    func testAWorkerHeldUpOnItsTileLeavesTheOthersToTheOtherWorker() {
        let pool = WorkerPool(count: 2)
        defer { pool.shutdown() }
        let queue = TileQueue(batch: 16, workers: 2, most: 8)
        let ran = Mutex([[Range<Int>]](repeating: [], count: 2))
        let started = Atomic<Bool>(false), done = Atomic<Int>(0)
        @Sendable func wait(until condition: () -> Bool) {
            let deadline = DispatchTime.now().uptimeNanoseconds + 10_000_000_000
            while !condition() && DispatchTime.now().uptimeNanoseconds < deadline { usleep(100) }
        }
        pool.run { worker in
            while let tile = queue.claim() {
                ran.withLock { $0[worker].append(tile) }
                if worker == 1 {
                    // Held up until worker 0 has run every other tile (or 10 s).
                    started.store(true, ordering: .sequentiallyConsistent)
                    wait { done.load(ordering: .sequentiallyConsistent) == queue.tiles.count - 1 }
                } else {
                    wait { started.load(ordering: .sequentiallyConsistent) }
                    done.add(1, ordering: .sequentiallyConsistent)
                }
            }
        }
        let (zero, one) = ran.withLock { ($0[0], $0[1]) }
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(zero.count, queue.tiles.count - 1)
        XCTAssertEqual((zero + one).sorted { $0.lowerBound < $1.lowerBound }, queue.tiles)
        XCTAssertNil(queue.claim())
    }

    /// While `timing` is on, the pool adds up the submitter's waits at the joins and the other
    /// workers' time in jobs; while it is off, neither moves.
    func testJobTimesAddUpWhileTimingIsOn() {
        let pool = WorkerPool(count: 2)
        defer { pool.shutdown() }
        pool.run { worker in if worker == 1 { usleep(3_000) } }
        XCTAssertTrue(pool.times == (0, 0), "timing off: \(pool.times)")
        pool.timing = true
        // Five times, worker 1 works 3 ms while the submitter returns at once and waits for it. (The
        // wait is checked loosely: a submitter that the machine's other load holds up between its
        // own return and the join waits less.)
        for _ in 0..<5 { pool.run { worker in if worker == 1 { usleep(3_000) } } }
        let first = pool.times
        XCTAssertGreaterThanOrEqual(first.waited, 5_000_000, "\(first)")
        XCTAssertGreaterThanOrEqual(first.othersBusy, 15_000_000, "\(first)")
        // Worker 1 returns at once; the submitter works until it has, and 5 ms more: worker 1 was
        // busy, and the submitter waited at the join, for far less than that. (Waiting for worker 1
        // inside the job keeps a worker that the machine's other load kept from starting late out
        // of the join's time.)
        let done = Atomic<Bool>(false)
        pool.run { worker in
            if worker == 1 {
                done.store(true, ordering: .releasing)
            } else {
                while !done.load(ordering: .acquiring) { usleep(100) }
                usleep(5_000)
            }
        }
        let second = pool.times
        XCTAssertLessThan(second.othersBusy - first.othersBusy, 4_000_000, "\(second)")
        XCTAssertLessThan(second.waited - first.waited, 4_000_000, "\(second)")
        pool.timing = false
        pool.run { worker in if worker == 1 { usleep(3_000) } }
        XCTAssertTrue(pool.times == second, "timing off again: \(pool.times)")
    }
}
