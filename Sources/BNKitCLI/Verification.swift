import BNFolding
import Foundation
import IDX
import ModelIR
import Runtime

/// The published tolerance: folded and unfolded outputs agree within this
/// absolute difference (float32 rounding of the folded weights).
public let defaultFoldTolerance: Float = 1e-5

/// What `bnconv verify` measured.
public struct VerificationReport: Sendable {
    public let samples: Int
    public let maxAbsDifference: Float
    public let maxRelativeDifference: Float
    public let classAgreement: Int
    public let unfoldedAccuracy: Double?
    public let foldedAccuracy: Double?
    public let tolerance: Float
    public let inputDescription: String

    public var passed: Bool { maxAbsDifference <= tolerance }

    public var text: String {
        var lines = [
            "inputs: \(inputDescription)",
            "max abs difference: \(maxAbsDifference)",
            "max relative difference: \(maxRelativeDifference)",
            "class agreement: \(classAgreement)/\(samples)",
        ]
        if let unfoldedAccuracy, let foldedAccuracy {
            lines.append("accuracy unfolded: \(String(format: "%.4f", unfoldedAccuracy)), folded: \(String(format: "%.4f", foldedAccuracy))")
        }
        lines.append(passed ? "OK: within the tolerance \(tolerance)" : "FAILED: max abs difference exceeds the tolerance \(tolerance)")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Runs the unfolded and the folded model side by side on the images (or,
/// without images, on 512 generated inputs uniform in [0, 1]).
public func verifyFold(graph: Graph, imagesPath: String?, labelsPath: String?, scale: InputScale?,
                       tolerance: Float = defaultFoldTolerance) throws -> (VerificationReport, FoldResult) {
    let folded = try BNFolder.fold(graph)
    let unfoldedResult: InferenceResult, foldedResult: InferenceResult
    let description: String
    if let imagesPath {
        unfoldedResult = try runInference(graph: graph, imagesPath: imagesPath, labelsPath: labelsPath, scale: scale)
        foldedResult = try runInference(graph: folded.graph, imagesPath: imagesPath, labelsPath: labelsPath, scale: scale)
        description = "\(unfoldedResult.imageCount) images from \(imagesPath)"
    } else {
        let unfolded = try Executor(graph: graph), executor = try Executor(graph: folded.graph)
        var generator = SystemRandomNumberGenerator()
        let count = 512
        let input = (0..<(count * unfolded.inputSize)).map { _ in Float.random(in: 0...1, using: &generator) }
        let a = try unfolded.run(input), b = try executor.run(input)
        unfoldedResult = InferenceResult(outputs: a, outputSize: unfolded.outputSize, predictions: unfolded.classes(of: a), labels: nil)
        foldedResult = InferenceResult(outputs: b, outputSize: executor.outputSize, predictions: executor.classes(of: b), labels: nil)
        description = "\(count) generated inputs, uniform in [0, 1]"
    }
    var maxAbs: Float = 0, maxRel: Float = 0
    for (u, f) in zip(unfoldedResult.outputs, foldedResult.outputs) {
        let difference = abs(u - f)
        if !(difference <= maxAbs) { maxAbs = difference.isNaN ? .infinity : difference }
        let relative = difference / max(abs(u), 1e-6)
        if relative > maxRel { maxRel = relative }
    }
    let agreement = zip(unfoldedResult.predictions, foldedResult.predictions).filter { $0 == $1 }.count
    let report = VerificationReport(samples: unfoldedResult.imageCount, maxAbsDifference: maxAbs, maxRelativeDifference: maxRel,
                                    classAgreement: agreement, unfoldedAccuracy: unfoldedResult.accuracy,
                                    foldedAccuracy: foldedResult.accuracy, tolerance: tolerance, inputDescription: description)
    return (report, folded)
}
