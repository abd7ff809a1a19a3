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
    /// Workers asleep on `sleep` (or about to be): the submitter signals only when there are any.
    private let sleepers = Atomic<Int>(0)
    private let stopping = Atomic<Bool>(false)
    private let sleep = NSCondition()
    /// The current job's address: a `Job` the submitter keeps alive while `run` waits for the
    /// workers. Written before the generation is bumped (release) and read by workers after they
    /// see the bump (acquire). A raw address, not a stored closure: a closure kept in a property
    /// is retained by the submitter and by each worker that calls it, and its reference count's
    /// cache line then crosses between the cores at every job (with the lock and the broadcast
    /// that woke no one, 1.25 µs a job on two vCPUs of AMD Zen 3, against 0.1 µs for the bare
    /// hand-over in C).
    private let job = Atomic<Int>(0)
    private let submit = NSLock()

    /// While set, the time the submitter waits at each job's join (`waited`) and the time the other
    /// workers spend running jobs (`othersBusy`) are added up, in nanoseconds, for a step
    /// profile: what a split step loses to the join, and how much of the step the others worked.
    /// Off, each job reads the flag once and the clock not at all.
    private let timed = Atomic<Bool>(false)
    private let waited = Atomic<UInt64>(0)
    private let othersBusy = Atomic<UInt64>(0)

    /// Each worker's share of the work of a balanced job (`run(balancing:)`), from the speeds
    /// measured in the last ones (sums to 1). Read and written by the submitter only.
    private let shares: UnsafeMutablePointer<Double>
    /// Each worker's time on its share of the current balanced job (ns), one a cache line.
    private let elapsed: UnsafeMutablePointer<UInt64>
    private static let elapsedStride = 16
    /// The bounds of the current balanced job's ranges (`count + 1`).
    private let bounds: UnsafeMutablePointer<Int>

    /// How long a waiting thread spins before it sleeps: 200 µs, by the clock. A count of PAUSEs
    /// is no measure of time across CPUs (PAUSE's latency differs by tens of times between CPU
    /// generations; 28 ns measured on AMD Zen 5), and a worker that fell asleep during a step run
    /// whole on the caller (a softmax head: 250 µs) paid a wake-up of tens of microseconds under a
    /// hypervisor at the next split step.
    private static let spinNanoseconds: UInt64 = 200_000

    /// True while the wait is under the spin window: the clock is read once every 256 calls
    /// (`spun` counts them), the first time to set `started` (0 until then). A wait that ends
    /// within its first 256 PAUSEs, as most hand-overs between the steps of one image do, never
    /// reads the clock: under a hypervisor the reads (one every 32 spins before) were a quarter
    /// of the time of a no-op job on two threads, spinning without PAUSE (1.13 µs; 0.83 µs
    /// without them; Intel Xeon family 6 model 207, KVM, clock source tsc).
    @inline(__always)
    private static func stillSpinning(since started: inout UInt64, _ spun: inout Int) -> Bool {
        spun += 1
        if spun & 255 != 0 { return true }
        let now = DispatchTime.now().uptimeNanoseconds
        if started == 0 { started = now }
        return now - started < spinNanoseconds
    }

    package init(count: Int) {
        self.count = max(1, count)
        shares = .allocate(capacity: self.count)
        shares.initialize(repeating: 1 / Double(self.count), count: self.count)
        elapsed = .allocate(capacity: self.count * Self.elapsedStride)
        elapsed.initialize(repeating: 0, count: self.count * Self.elapsedStride)
        bounds = .allocate(capacity: self.count + 1)
        bounds.initialize(repeating: 0, count: self.count + 1)
        for worker in 1..<self.count {
            // Each thread keeps the pool alive until `shutdown` lets it return.
            let thread = Thread { self.loop(worker: worker) }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Whether jobs are timed (`times`).
    package var timing: Bool {
        get { timed.load(ordering: .relaxed) }
        set { timed.store(newValue, ordering: .relaxed) }
    }

    /// The nanoseconds, over the jobs run while `timing` was on, the submitter spent waiting for the
    /// other workers at the joins, and the other workers spent in jobs (all of them together).
    /// Complete for every job that has returned: a worker adds its time before it reports done.
    package var times: (waited: UInt64, othersBusy: UInt64) {
        (waited.load(ordering: .relaxed), othersBusy.load(ordering: .relaxed))
    }

    /// Stops the threads (they exit after their current wait).
    package func shutdown() {
        stopping.store(true, ordering: .releasing)
        sleep.lock()
        generation.add(1, ordering: .sequentiallyConsistent)
        sleep.broadcast()
        sleep.unlock()
    }

    /// Runs `body(worker)` for every worker in 0..<count, in parallel, and returns when all are done.
    package func run(_ body: (Int) -> Void) {
        if count == 1 { body(0); return }
        submit.lock()
        defer { submit.unlock() }
        dispatch(body)
    }

    /// `run` without the submitter's lock (held by the caller).
    private func dispatch(_ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let current = Job(body)
            withExtendedLifetime(current) {
                job.store(Int(bitPattern: Unmanaged.passUnretained(current).toOpaque()), ordering: .relaxed)
                pending.store(count - 1, ordering: .relaxed)
                // Sequentially consistent with the workers' `sleepers` count: either a worker going
                // to sleep sees this generation, or this sees it and wakes it.
                generation.add(1, ordering: .sequentiallyConsistent)
                if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                    sleep.lock()
                    sleep.broadcast()
                    sleep.unlock()
                }
                current.body(0)
                let joined = timed.load(ordering: .relaxed) ? DispatchTime.now().uptimeNanoseconds : 0
                var spun = 0
                var spinning = true
                var started: UInt64 = 0
                while pending.load(ordering: .acquiring) != 0 {
                    if spinning { bnk_cpu_relax(); spinning = Self.stillSpinning(since: &started, &spun) } else { sched_yield() }
                }
                if joined != 0 { waited.add(DispatchTime.now().uptimeNanoseconds - joined, ordering: .relaxed) }
            }
        }
    }

    /// The current job, kept alive by the submitter while the workers run it. The workers call it
    /// through an unretained reference to a constant property: a closure read from memory is
    /// retained and released by each worker that calls it, and its reference count's cache line
    /// then crosses between the cores at every job (a no-op job on two threads, Intel Xeon family
    /// 6 model 207: 1.01 → 0.88 µs).
    private final class Job {
        let body: (Int) -> Void
        init(_ body: @escaping (Int) -> Void) { self.body = body }
    }

    /// Runs `body(range, worker)` on every worker, the ranges cutting `0..<count` at multiples of
    /// `align` in proportion to the workers' speeds as measured in the balanced jobs before (equal
    /// at first), and returns when all are done; then updates the speeds from this job's times.
    /// For work split in fixed shares (each worker one contiguous range): when one core runs slower
    /// than the other for a while (a vCPU whose host core is shared), equal halves leave the faster
    /// one waiting at every join.
    package func run(balancing count: Int, align: Int = 1, _ body: (Range<Int>, Int) -> Void) {
        if self.count == 1 { return body(0..<count, 0) }
        // The shares and bounds belong to one submitter at a time.
        submit.lock()
        defer { submit.unlock() }
        let workers = self.count, align = max(align, 1)
        let units = (count + align - 1) / align
        let bounds = self.bounds, elapsed = self.elapsed
        var sum = 0.0
        for w in 0..<workers {
            sum += shares[w]
            bounds[w + 1] = w == workers - 1 ? count : min(count, Int((sum * Double(units)).rounded()) * align)
        }
        dispatch { worker in
            let range = bounds[worker]..<max(bounds[worker], bounds[worker + 1])
            let started = DispatchTime.now().uptimeNanoseconds
            if !range.isEmpty { body(range, worker) }
            elapsed[worker * Self.elapsedStride] = DispatchTime.now().uptimeNanoseconds - started
        }
        rebalance()
    }

    /// Moves the shares a fifth of the way toward the speeds of the job just run (units of work a
    /// nanosecond, each worker's own), within a quarter and four times an equal share. Jobs of
    /// under 20 µs, or with a worker that had nothing to do, are too short to measure.
    private func rebalance() {
        var total = 0.0, longest: UInt64 = 0
        for w in 0..<count {
            let time = elapsed[w * Self.elapsedStride], units = bounds[w + 1] - bounds[w]
            guard units > 0, time > 0 else { return }
            total += Double(units) / Double(time)
            longest = max(longest, time)
        }
        guard longest >= 20_000 else { return }
        let equal = 1 / Double(count)
        var sum = 0.0
        for w in 0..<count {
            let speed = Double(bounds[w + 1] - bounds[w]) / Double(elapsed[w * Self.elapsedStride])
            shares[w] = min(4 * equal, max(equal / 4, 0.8 * shares[w] + 0.2 * speed / total))
            sum += shares[w]
        }
        for w in 0..<count { shares[w] /= sum }
    }

    /// Each worker's share of the next balanced job (set for tests: shares that sum to 1).
    package var balance: [Double] {
        get { submit.withLock { (0..<count).map { shares[$0] } } }
        set {
            precondition(newValue.count == count && newValue.allSatisfy { $0 > 0 }, "one positive share a worker")
            let sum = newValue.reduce(0, +)
            submit.withLock { for w in 0..<count { shares[w] = newValue[w] / sum } }
        }
    }

    deinit {
        shares.deallocate()
        elapsed.deallocate()
        bounds.deallocate()
    }

    private func loop(worker: Int) {
        var seen = 0
        while true {
            var spun = 0
            var started: UInt64 = 0
            var current = generation.load(ordering: .acquiring)
            while current == seen && Self.stillSpinning(since: &started, &spun) {
                bnk_cpu_relax()
                current = generation.load(ordering: .acquiring)
            }
            if current == seen {
                sleepers.add(1, ordering: .sequentiallyConsistent)
                sleep.lock()
                current = generation.load(ordering: .sequentiallyConsistent)
                while current == seen {
                    sleep.wait()
                    current = generation.load(ordering: .sequentiallyConsistent)
                }
                sleep.unlock()
                sleepers.subtract(1, ordering: .relaxed)
            }
            seen = current
            if stopping.load(ordering: .acquiring) { return }
            let began = timed.load(ordering: .relaxed) ? DispatchTime.now().uptimeNanoseconds : 0
            Unmanaged<Job>.fromOpaque(UnsafeRawPointer(bitPattern: job.load(ordering: .relaxed))!)._withUnsafeGuaranteedRef { $0.body(worker) }
            if began != 0 { othersBusy.add(DispatchTime.now().uptimeNanoseconds - began, ordering: .relaxed) }
            pending.subtract(1, ordering: .releasing)
        }
    }
}
