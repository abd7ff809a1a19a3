import BNKit
import Foundation
import IDX
import ModelIR
import Runtime

/// The images of an IDX file as calibration batches: the file is streamed again for
/// each pass, a tile at a time (memory does not grow with the number of images).
public struct IDXCalibrationImages: CalibrationBatches {
    public let path: String
    public let scale: InputScale
    public let batch: Int
    public let limit: Int

    public func forEachBatch(_ body: (UnsafeBufferPointer<Float>) throws -> Void) throws {
        let reader = TileReader(IDXSource(try IDXStream(path: path)), tileSize: batch, scale: scale, limit: limit)
        while try reader.next({ tile, _ in try body(tile) }) {}
    }
}

/// `bnconv recalibrate`: re-estimates every BatchNormalization layer's moving mean and
/// variance from the images (see `BatchNormRecalibration`), reports what moved (and the
/// accuracy before and after, with labels) and saves the unfolded model to `outputPath`
/// (.h5 or .bin by extension). Returns the report; nothing is written on failure.
public func recalibrateModel(modelPath: String, imagesPath: String, outputPath: String, labelsPath: String?,
                             scale: InputScale?, limit: Int?, batch: Int, threads: Int) throws -> String {
    var model = try Model.load(path: modelPath)
    guard model.graph.nodes.contains(where: { if case .batchNorm = $0.operation { true } else { false } }) else {
        throw CLIFailure.badInput("\(modelPath): \(RecalibrationError.noBatchNorm)")
    }
    let executor = try Executor(graph: model.graph)
    let images = try openImages(imagesPath, inputSize: executor.inputSize, inputShape: executor.inputShape)
    let count = min(images.itemCount, limit ?? images.itemCount)
    guard count > 0 else { throw CLIFailure.badInput("\(imagesPath): holds no images to compute statistics from") }
    let scale = scale ?? (images.dataType.isInteger ? InputScale("1/255")! : InputScale("1")!)
    var lines: [String] = []
    func accuracy(_ graph: Graph, _ when: String) throws {
        guard let labelsPath else { return }
        let result = try runInference(graph: graph, imagesPath: imagesPath, labelsPath: labelsPath, scale: scale,
                                      tileSize: batch, threads: threads, limit: count)
        lines.append("accuracy \(when): \(String(format: "%.4f", result.accuracy ?? 0)) (\(result.correct ?? 0)/\(result.imageCount))")
    }
    try accuracy(model.graph, "before")
    let passes = try BatchNormRecalibration.passes(of: model.graph).count
    let changes: [BatchNormChange]
    do {
        changes = try model.recalibrateBatchNorm(using: IDXCalibrationImages(path: imagesPath, scale: scale, batch: batch, limit: count),
                                                 threads: threads)
    } catch let error as RecalibrationError {
        throw CLIFailure.badInput("\(modelPath): \(error)")
    }
    lines.insert("recalibrated \(changes.count) BatchNormalization layer\(changes.count == 1 ? "" : "s") on \(count) images of \(imagesPath)"
                 + " (scale \(scale); \(passes) pass\(passes == 1 ? "" : "es") over the images)", at: 0)
    lines.insert(contentsOf: changes.map(\.description), at: 1)
    try accuracy(model.graph, "after")
    model.metadata["bn_statistics"] = "recalibrated on \(count) images of \(URL(fileURLWithPath: imagesPath).lastPathComponent) (scale \(scale))"
    model.metadata.merge(outputMetadata(producer: "bnconv recalibrate", source: modelPath)) { _, new in new }
    let notices = try model.save(to: outputPath)
    lines += notices.map { "note: \($0)" }
    lines.append("wrote \(outputPath) (\((ModelFormat.forSaving(path: outputPath) ?? .native).rawValue), unfolded)")
    return lines.joined(separator: "\n") + "\n"
}
