import Synchronization

/// A batch cut into tiles that the workers claim in order as each comes free, so a worker on a
/// slower core ends up with fewer samples instead of holding up the batch. There are at least two
/// tiles per worker, and a multiple of the workers, as even as they go and none over `most` (the
/// tile the cache plan allows): on cores of one speed each worker runs the same samples as in an
/// even share of fixed tiles. Fixed shares left MobileNetV2 96 at batch 16 on two threads one
/// tile of 8 per worker, so with another process busy on one of the two vCPUs the batch ran at
/// the speed of one thread. With that process, batch 16 on two threads, fixed shares against tiles
/// claimed (AMD Zen 3, medians of alternating runs): MobileNetV2 96 607 -> 650 img/s, ResNet50 96
/// 72 -> 93, MobileNetV2 224 126 -> 130; without it, within the noise (1,047 and 1,206; 127 and
/// 139). Tiles of 4, 3, 3, 2, 2, 2 (shrinking to the end) did better for MobileNetV2 96 with the
/// busy process (801) but cost ResNet50 96 7% without (154 -> 144: its 100 MB of weights stream
/// once a tile), and tiles of 6, 6, 4 left one worker 10 samples of 16.
package final class TileQueue: Sendable {
    package let tiles: [Range<Int>]
    private let claimed = Atomic<Int>(0)

    package init(batch: Int, workers: Int, most: Int) {
        let workers = max(workers, 1), most = max(most, 1)
        let atLeast = max(2 * workers, (batch + most - 1) / most)
        let count = min(batch, (atLeast + workers - 1) / workers * workers)
        tiles = (0..<count).map { StepParallelism.range(part: $0, of: count, count: batch) }
    }

    /// The next tile, or nil when all are claimed. Safe from any thread.
    package func claim() -> Range<Int>? {
        let index = claimed.add(1, ordering: .relaxed).oldValue
        return index < tiles.count ? tiles[index] : nil
    }
}
