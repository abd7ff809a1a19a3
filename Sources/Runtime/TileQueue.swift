import Synchronization

/// A batch cut into tiles that the workers claim in order as each comes free, so a worker on a
/// slower core ends up with fewer samples instead of holding up the batch.
///
/// The tiles go in rounds of one per worker, each round's tiles three quarters of the remaining
/// samples over the workers, at most `most` (the tile the cache plan allows) and at least a quarter
/// of it: large tiles while the batch lasts, small ones at its end, where a worker that came free
/// early picks up what a slow one would have left. On cores of one speed each worker claims one
/// tile a round, and the workers' shares differ by at most a tile of the last round. Batch 16 on
/// two threads in tiles of at most 8 (MobileNetV2 96, RegNetX-400MF 96): 6, 6, 2, 2.
///
/// Measured on an AMD Zen 3 (2 vCPUs), batch 16 on two threads, medians of alternating runs.
/// Fixed shares left these networks one tile of 8 a worker. With another process busy on one vCPU
/// at nice 3 (our thread there getting about two thirds of it) the batch ran at 1.3× one thread;
/// so did this VM's slow stretches (RegNetX 96: 686–704 img/s for four passes, 946–1,030
/// after).
///
/// | schedule | RegNetX-400MF 96, quiet | busy vCPU | MobileNetV2 96, busy vCPU |
/// |---|---|---|---|
/// | fixed shares, 8 a worker | 1,014 | 649 | 793 |
/// | 4, 4, 4, 4 | 989 | 638 | 744 |
/// | 6, 6, 2, 2 (these rounds) | 986 | 645 | 923 |
/// | 4, 4, 2, 2, 2, 2 (rounds of half the rest) | 950 | 680 | 902 |
///
/// Quiet, rounds of half the rest cost 7–9% (RegNetX 1,009 -> 942, MobileNetV2 96 1,235 -> 1,159,
/// eight rounds each); rounds down to tiles of 1 did no better with the busy vCPU; tiles shrinking
/// claim by claim (4, 3, 3, 2, 2, 2) cost ResNet50 96 7% (154 -> 144: its 100 MB of weights stream
/// once a tile), and 6, 6, 4 left one worker 10 samples of 16.
package final class TileQueue: Sendable {
    package let tiles: [Range<Int>]
    private let claimed = Atomic<Int>(0)

    package init(batch: Int, workers: Int, most: Int) {
        let workers = max(workers, 1), most = max(most, 1), least = max(most / 4, 1)
        var tiles: [Range<Int>] = [], start = 0
        while start < batch {
            let size = min(most, max(least, (3 * (batch - start) + 4 * workers - 1) / (4 * workers)))
            for _ in 0..<workers where start < batch {
                tiles.append(start..<min(batch, start + size))
                start = tiles.last!.upperBound
            }
        }
        self.tiles = tiles
    }

    /// The next tile, or nil when all are claimed. Safe from any thread.
    package func claim() -> Range<Int>? {
        let index = claimed.add(1, ordering: .relaxed).oldValue
        return index < tiles.count ? tiles[index] : nil
    }
}
