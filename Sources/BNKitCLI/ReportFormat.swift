import Foundation

/// How `bnrun` prints its results.
public enum ReportFormat: String, CaseIterable, Sendable {
    /// One line per image (`index<TAB>prediction`), then the accuracy.
    case text
    /// `index,prediction,p0,...,p{K-1}`, outputs at full float precision.
    case csv
    /// One JSON object with predictions, outputs and accuracy.
    case json
    /// Only the image count and the accuracy.
    case summary

    /// Renders `result`. Floats are printed in their shortest form that reads
    /// back to the same float (full precision).
    public func render(_ result: InferenceResult) -> String {
        var out = ""
        let k = result.outputSize
        switch self {
        case .text:
            for (i, p) in result.predictions.enumerated() { out += "\(i)\t\(p)\n" }
            out += summaryLines(result)
        case .summary:
            out += summaryLines(result)
        case .csv:
            out += "index,prediction" + (0..<k).map { ",p\($0)" }.joined() + "\n"
            for (i, p) in result.predictions.enumerated() {
                out += "\(i),\(p)"
                for v in result.outputs[(i * k)..<((i + 1) * k)] { out += ",\(v)" }
                out += "\n"
            }
        case .json:
            out += "{\"images\":\(result.imageCount),\"outputs_per_image\":\(k)"
            if let accuracy = result.accuracy, let correct = result.correct {
                out += ",\"accuracy\":\(accuracy),\"correct\":\(correct)"
            }
            out += ",\"predictions\":[" + result.predictions.map(String.init).joined(separator: ",") + "]"
            out += ",\"outputs\":["
            out += (0..<result.imageCount).map { i in
                "[" + result.outputs[(i * k)..<((i + 1) * k)].map { jsonNumber($0) }.joined(separator: ",") + "]"
            }.joined(separator: ",")
            out += "]}\n"
        }
        return out
    }

    private func summaryLines(_ result: InferenceResult) -> String {
        var out = "images: \(result.imageCount)\n"
        if let accuracy = result.accuracy, let correct = result.correct {
            out += "accuracy: \(String(format: "%.4f", accuracy)) (\(correct)/\(result.imageCount))\n"
        }
        return out
    }

    private func jsonNumber(_ value: Float) -> String {
        value.isFinite ? "\(value)" : "null"
    }
}
