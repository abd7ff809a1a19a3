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

    public var imageCount: Int { predictions.count }

    /// Correct predictions, when labels were given.
    public var correct: Int? {
        labels.map { labels in zip(predictions, labels).filter { $0 == $1 }.count }
    }

    public var accuracy: Double? {
        correct.map { imageCount == 0 ? 0 : Double($0) / Double(imageCount) }
    }
}

/// Runs `graph` over the images of an IDX file, a tile at a time.
public func runInference(graph: Graph, imagesPath: String, labelsPath: String?, scale: InputScale?,
                         tileSize: Int = 1024, threads: Int = 1) throws -> InferenceResult {
    let executor = try Executor(graph: graph)
    // Images are streamed a tile at a time: memory stays flat however large the file.
    let images = try IDXStream(path: imagesPath)
    guard images.itemSize == executor.inputSize else {
        throw CLIFailure.badInput("\(imagesPath): each image has \(images.itemSize) values (dimensions \(images.dimensions.dropFirst().map(String.init).joined(separator: "×"))) but the model takes \(executor.inputSize) (shape \(executor.inputShape))")
    }
    var labels: [Int]?
    if let labelsPath {
        let array = try IDXReader.read(path: labelsPath)
        guard array.dimensions.count == 1, let values = array.integers() else {
            throw CLIFailure.badInput("\(labelsPath): labels must be a one-dimensional IDX array of integers")
        }
        guard values.count == images.itemCount else {
            throw CLIFailure.badInput("\(labelsPath): \(values.count) labels for \(images.itemCount) images in \(imagesPath)")
        }
        labels = values
    }
    let scale = scale ?? (images.dataType.isInteger ? InputScale("1/255")! : InputScale("1")!)
    var outputs: [Float] = []
    outputs.reserveCapacity(images.itemCount * executor.outputSize)
    while images.position < images.itemCount {
        let tile = try images.next(tileSize, multiplier: scale.multiplier, divisor: scale.divisor)
        outputs += try executor.run(tile, threads: threads)
    }
    return InferenceResult(outputs: outputs, outputSize: executor.outputSize,
                           predictions: executor.classes(of: outputs), labels: labels)
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
    _ = try executor.run(tiles[0], threads: threads)  // warm up: plan buffers
    var rates: [Double] = []
    for _ in 0..<max(repeats, 1) {
        let start = DispatchTime.now().uptimeNanoseconds
        for tile in tiles { _ = try executor.run(tile, threads: threads) }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates.append(Double(images.itemCount) / seconds)
    }
    return (rates.sorted()[rates.count / 2], rates)
}
