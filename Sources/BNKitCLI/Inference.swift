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

/// What a run reads besides the model.
public struct RunOptions: Sendable {
    public var scale: InputScale?
    /// Samples read and run at once; nil: `defaultTileSize`.
    public var tileSize: Int?
    public var threads = 1
    public var showProgress = false
    /// Only the first `limit` samples.
    public var limit: Int?
    public var batchNormStatistics: BatchNormStatistics = .running
    /// The model file, for messages.
    public var modelPath: String?
    /// The array of an `.npz`.
    public var array: String?
    public var images = ImageOptions()
    public init() {}

    /// 1024 samples, or as many as 64 MiB of float inputs hold when that is fewer (224 × 224 × 3
    /// images: 111): two tiles are in memory at once (one read while the other runs), and 1024
    /// such images would take 1.2 GB. With batch statistics a tile is the batch, so it stays 1024.
    public func defaultTileSize(inputSize: Int) -> Int {
        batchNormStatistics == .batch ? 1024 : min(1024, max(1, (64 << 20) / max(4 * inputSize, 1)))
    }
}

/// Labels (a one-dimensional IDX array of integers), streamed alongside the samples.
final class LabelStream {
    let stream: IDXStream
    private var values: [Float] = []

    init(path: String, count: Int, samples: String) throws {
        stream = try IDXStream(path: path)
        guard stream.dimensions.count == 1, stream.dataType.isInteger else {
            throw CLIFailure.badInput("\(path): labels must be a one-dimensional IDX array of integers")
        }
        guard stream.itemCount == count else {
            throw CLIFailure.badInput("\(path): \(stream.itemCount) labels for \(count) images in \(samples)")
        }
    }

    func next(_ count: Int) throws -> [Int] {
        try stream.next(count, into: &values)
        return values.map { Int($0) }
    }
}

/// Runs `graph` over the samples in `inputs` (see `openSamples`), a tile at a time,
/// calling `body` with each tile's outputs, predicted classes, keys (image paths) and
/// labels. Memory stays at a few tiles however many samples there are. With
/// `BatchNormStatistics.batch` each tile of `tileSize` samples is one batch whose own
/// statistics its BatchNormalization layers use. Returns the executor's output shape,
/// the samples run and the files skipped.
@discardableResult
public func streamInference(graph: Graph, inputs: [String], labelsPath: String?, options: RunOptions,
                            prepare: (_ outputShape: [Int], _ source: SampleSource, _ count: Int) throws -> Void = { _, _, _ in },
                            body: (_ outputs: UnsafeBufferPointer<Float>, _ predictions: [Int], _ keys: [String], _ labels: [Int]?) throws -> Void)
    throws -> (outputShape: [Int], rows: Int, skipped: [(path: String, reason: String)]) {
    if options.batchNormStatistics == .batch { try checkBatchStatistics(graph, modelPath: options.modelPath) }
    let executor = try Executor(graph: graph, batchNormStatistics: options.batchNormStatistics)
    let source = try openSamples(inputs, inputSize: executor.inputSize, inputShape: executor.inputShape, array: options.array,
                                 images: options.images)
    let count = min(source.itemCount, options.limit ?? source.itemCount)
    if source.keyed, options.scale != nil, options.images.preprocessing != .none {
        throw CLIFailure.badInput("\(source.name): --scale and --preprocess \(options.images.preprocessing.rawValue) both rescale the images: use one")
    }
    if source.keyed, labelsPath != nil, options.images.skipBad {
        throw CLIFailure.badInput("--labels cannot be combined with --skip-bad (a skipped image would shift the labels)")
    }
    let labels = try labelsPath.map { try LabelStream(path: $0, count: source.itemCount, samples: source.name) }
    try prepare(executor.outputShape, source, count)
    let scale = options.scale ?? (source.isInteger ? InputScale("1/255")! : InputScale("1")!)
    // The next tile is read (and inflated, decoded) on another thread while this one runs.
    let reader = TileReader(source, tileSize: options.tileSize ?? options.defaultTileSize(inputSize: executor.inputSize), scale: scale,
                            limit: count)
    let progress = ProgressLine(total: count, unit: "images", enabled: options.showProgress)
    defer { progress.finish() }
    var done = 0
    var outputs: [Float] = []
    while try reader.next({ tile, keys in
        let samples = tile.count / max(executor.inputSize, 1)
        if outputs.count < samples * executor.outputSize { outputs = [Float](repeating: 0, count: samples * executor.outputSize) }
        try outputs.withUnsafeMutableBufferPointer { all in
            let part = UnsafeMutableBufferPointer(rebasing: all[0..<(samples * executor.outputSize)])
            try executor.run(tile, into: part, threads: options.threads)
            let predictions = executor.classes(of: UnsafeBufferPointer(part))
            try body(UnsafeBufferPointer(part), predictions, keys, try labels?.next(samples))
        }
        done += samples
        progress.update(done)
    }) {}
    return (executor.outputShape, done, source.skipped)
}

/// Runs `graph` over the images of an IDX file (or any input `openSamples` reads), keeping
/// every output in memory: for `bnconv verify` and accuracy reports on bounded inputs.
public func runInference(graph: Graph, imagesPath: String, labelsPath: String?, scale: InputScale?,
                         tileSize: Int = 1024, threads: Int = 1, showProgress: Bool = false, limit: Int? = nil,
                         batchNormStatistics: BatchNormStatistics = .running, modelPath: String? = nil) throws -> InferenceResult {
    var options = RunOptions()
    options.scale = scale
    options.tileSize = tileSize
    options.threads = threads
    options.showProgress = showProgress
    options.limit = limit
    options.batchNormStatistics = batchNormStatistics
    options.modelPath = modelPath
    var outputs: [Float] = [], predictions: [Int] = [], labels: [Int]? = labelsPath == nil ? nil : []
    let (shape, _, _) = try streamInference(graph: graph, inputs: [imagesPath], labelsPath: labelsPath, options: options) { out, classes, _, tileLabels in
        outputs += out
        predictions += classes
        if let tileLabels { labels? += tileLabels }
    }
    var result = InferenceResult(outputs: outputs, outputSize: shape.reduce(1, *), predictions: predictions, labels: labels)
    result.batchNormStatistics = batchNormStatistics
    return result
}

/// Throughput of the model on the images, in process, without printing:
/// images per second over all images in batches of `batch`, median of `repeats` passes.
public func benchmark(graph: Graph, imagesPath: String, scale: InputScale?, batch: Int, threads: Int, repeats: Int,
                      profile: ((_ steps: [Executor.StepTime]) -> Void)? = nil) throws -> (median: Double, all: [Double]) {
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
    executor.profiling = profile != nil
    defer { profile?(executor.stepProfile) }
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
    private let stream: SampleSource
    private let tileSize: Int
    private let scale: InputScale
    /// Items still to read.
    private var remaining: Int
    /// Filled in the background; handed over (swapped into `current`) by `next`.
    private var loaded: [Float] = []
    private var current: [Float] = []
    private var loadedKeys: [String] = []
    private var currentKeys: [String] = []
    private var failure: Error?
    private let loading = DispatchGroup()

    /// Reads the stream's items from its current position; at most `limit` of them when given.
    init(_ stream: SampleSource, tileSize: Int, scale: InputScale, limit: Int? = nil) {
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
                self.loadedKeys = try self.stream.next(count, into: &self.loaded, multiplier: self.scale.multiplier, divisor: self.scale.divisor)
            } catch {
                self.failure = error
            }
            self.loading.leave()
        }
    }

    /// Calls `body` with the next tile and returns true, or returns false after the last.
    func next(_ body: (UnsafeBufferPointer<Float>, [String]) throws -> Void) throws -> Bool {
        loading.wait()
        if let failure { throw failure }
        if loaded.isEmpty && remaining == 0 { return false }
        if loaded.isEmpty {
            // A tile of images that were all skipped: read on.
            startLoading()
            return try next(body)
        }
        swap(&loaded, &current)
        swap(&loadedKeys, &currentKeys)
        startLoading()
        do {
            let keys = currentKeys
            try current.withUnsafeBufferPointer { try body($0, keys) }
        } catch {
            loading.wait()  // the reader must not outlive the buffers it writes
            throw error
        }
        return true
    }

    deinit { loading.wait() }
}
