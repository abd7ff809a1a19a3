import Dispatch
import Foundation
import IDX
import ModelIR
import Runtime

/// How integer pixels become model inputs: `Float(x) * multiplier / divisor`.
public struct InputScale: Sendable, CustomStringConvertible {
    public var multiplier: Float
    public var divisor: Float

    /// Parses `1/255`, `0.5` or `1`.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, let m = Float(parts[0]), let d = Float(parts[1]), d != 0, m.isFinite, d.isFinite {
            multiplier = m; divisor = d
        } else if parts.count == 1, let m = Float(parts[0]), m.isFinite {
            multiplier = m; divisor = 1
        } else {
            return nil
        }
    }

    public var description: String { divisor == 1 ? "\(multiplier)" : "\(multiplier)/\(divisor)" }
}

/// The result of running a model over an IDX file.
public struct InferenceResult: Sendable {
    /// Output values, `outputSize` per image.
    public let outputs: [Float]
    public let outputSize: Int
    public let predictions: [Int]
    public let labels: [Int]?
    /// What BatchNormalization layers normalized with.
    public var batchNormStatistics: BatchNormStatistics = .running

    public var imageCount: Int { predictions.count }

    /// Correct predictions, when labels were given.
    public var correct: Int? {
        labels.map { labels in zip(predictions, labels).filter { $0 == $1 }.count }
    }

    public var accuracy: Double? {
        correct.map { imageCount == 0 ? 0 : Double($0) / Double(imageCount) }
    }
}

/// Opens an IDX file of images for a model taking `inputSize` values per image; refuses a
/// file whose images do not have that many values.
func openImages(_ imagesPath: String, inputSize: Int, inputShape: [Int]) throws -> IDXStream {
    let images = try IDXStream(path: imagesPath)
    guard images.itemSize == inputSize else {
        throw CLIFailure.badInput("\(imagesPath): each image has \(images.itemSize) values (dimensions \(images.dimensions.dropFirst().map(String.init).joined(separator: "×"))) but the model takes \(inputSize) (shape \(inputShape))")
    }
    return images
}

/// Refuses batch statistics for a model without BatchNormalization layers (a folded one).
func checkBatchStatistics(_ graph: Graph, modelPath: String?) throws {
    guard !graph.nodes.contains(where: { if case .batchNorm = $0.operation { true } else { false } }) else { return }
    let name = modelPath.map { "\($0): " } ?? ""
    throw CLIFailure.badInput("\(name)the model has no BatchNormalization layer (a folded model has none left): batch statistics need the unfolded model (.h5, .keras, or a .bin from bnconv convert)")
}

/// Runs `graph` over the images of an IDX file, a tile at a time (the first `limit`
/// images when given). With `BatchNormStatistics.batch` each tile of `tileSize` images
/// is one batch whose own statistics its BatchNormalization layers use.
public func runInference(graph: Graph, imagesPath: String, labelsPath: String?, scale: InputScale?,
                         tileSize: Int = 1024, threads: Int = 1, showProgress: Bool = false, limit: Int? = nil,
                         batchNormStatistics: BatchNormStatistics = .running, modelPath: String? = nil) throws -> InferenceResult {
    if batchNormStatistics == .batch { try checkBatchStatistics(graph, modelPath: modelPath) }
    let executor = try Executor(graph: graph, batchNormStatistics: batchNormStatistics)
    // Images are streamed a tile at a time: memory stays flat however large the file.
    let images = try openImages(imagesPath, inputSize: executor.inputSize, inputShape: executor.inputShape)
    let imageCount = min(images.itemCount, limit ?? images.itemCount)
    var labels: [Int]?
    if let labelsPath {
        let array = try IDXReader.read(path: labelsPath)
        guard array.dimensions.count == 1, let values = array.integers() else {
            throw CLIFailure.badInput("\(labelsPath): labels must be a one-dimensional IDX array of integers")
        }
        guard values.count == images.itemCount else {
            throw CLIFailure.badInput("\(labelsPath): \(values.count) labels for \(images.itemCount) images in \(imagesPath)")
        }
        labels = Array(values.prefix(imageCount))
    }
    let scale = scale ?? (images.dataType.isInteger ? InputScale("1/255")! : InputScale("1")!)
    var outputs = [Float](repeating: 0, count: imageCount * executor.outputSize)
    // The next tile is read (and inflated) on another thread while this one runs.
    let reader = TileReader(images, tileSize: tileSize, scale: scale, limit: imageCount)
    let progress = ProgressLine(total: imageCount, unit: "images", enabled: showProgress)
    defer { progress.finish() }
    var done = 0
    try outputs.withUnsafeMutableBufferPointer { all in
        while try reader.next({ tile in
            let count = tile.count / executor.inputSize * executor.outputSize
            try executor.run(tile, into: UnsafeMutableBufferPointer(rebasing: all[done..<(done + count)]), threads: threads)
            done += count
            progress.update(done / max(executor.outputSize, 1))
        }) {}
    }
    var result = InferenceResult(outputs: outputs, outputSize: executor.outputSize,
                                 predictions: executor.classes(of: outputs), labels: labels)
    result.batchNormStatistics = batchNormStatistics
    return result
}

/// Throughput of the model on the images, in process, without printing:
/// images per second over all images in batches of `batch`, median of `repeats` passes.
public func benchmark(graph: Graph, imagesPath: String, scale: InputScale?, batch: Int, threads: Int, repeats: Int) throws -> (median: Double, all: [Double]) {
    let executor = try Executor(graph: graph)
    let images = try IDXReader.read(path: imagesPath)
    guard images.itemSize == executor.inputSize else {
        throw CLIFailure.badInput("\(imagesPath): each image has \(images.itemSize) values but the model takes \(executor.inputSize)")
    }
    let scale = scale ?? (images.dataType.isInteger ? InputScale("1/255")! : InputScale("1")!)
    let all = images.floats(0..<images.count, multiplier: scale.multiplier, divisor: scale.divisor)
    let size = executor.inputSize
    let tiles = stride(from: 0, to: images.itemCount, by: batch).map { start in
        Array(all[(start * size)..<(min(start + batch, images.itemCount) * size)])
    }
    // Warm up with one untimed pass over all batches (buffers planned, caches and
    // branch predictors trained, the CPU out of its idle state): a steady-state rate.
    for tile in tiles { _ = try executor.run(tile, threads: threads) }
    var rates: [Double] = []
    for _ in 0..<max(repeats, 1) {
        let start = DispatchTime.now().uptimeNanoseconds
        for tile in tiles { _ = try executor.run(tile, threads: threads) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates.append(Double(images.itemCount) / seconds)
    }
    return (rates.sorted()[rates.count / 2], rates)
}

/// Reads an IDX stream a tile at a time, one tile ahead, on a background thread:
/// inflating and converting the next tile overlaps running the current one.
/// Two buffers take turns, so memory stays at two tiles.
final class TileReader: @unchecked Sendable {
    private let stream: IDXStream
    private let tileSize: Int
    private let scale: InputScale
    /// Items still to read.
    private var remaining: Int
    /// Filled in the background; handed over (swapped into `current`) by `next`.
    private var loaded: [Float] = []
    private var current: [Float] = []
    private var failure: Error?
    private let loading = DispatchGroup()

    /// Reads the stream's items from its current position; at most `limit` of them when given.
    init(_ stream: IDXStream, tileSize: Int, scale: InputScale, limit: Int? = nil) {
        self.stream = stream
        self.tileSize = tileSize
        self.scale = scale
        self.remaining = max(0, limit ?? Int.max)
        startLoading()
    }

    private func startLoading() {
        loading.enter()
        let count = min(tileSize, remaining)
        remaining -= count
        DispatchQueue.global().async {
            do {
                try self.stream.next(count, into: &self.loaded, multiplier: self.scale.multiplier, divisor: self.scale.divisor)
            } catch {
                self.failure = error
            }
            self.loading.leave()
        }
    }

    /// Calls `body` with the next tile and returns true, or returns false after the last.
    func next(_ body: (UnsafeBufferPointer<Float>) throws -> Void) throws -> Bool {
        loading.wait()
        if let failure { throw failure }
        if loaded.isEmpty { return false }
        swap(&loaded, &current)
        startLoading()
        do {
            try current.withUnsafeBufferPointer(body)
        } catch {
            loading.wait()  // the reader must not outlive the buffers it writes
            throw error
        }
        return true
    }

    deinit { loading.wait() }
}
