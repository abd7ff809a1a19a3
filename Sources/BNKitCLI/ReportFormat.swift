import AtomicFile
import Foundation

/// How `bnrun` reports its results. Every format is written as batches finish, in order,
/// so memory stays flat for any number of inputs.
public enum ReportFormat: String, CaseIterable, Sendable {
    /// One line per sample (`index<TAB>prediction`, or the image path), then the accuracy.
    /// Outputs that are not score vectors (segmentation maps, …): `index<TAB>` and every value.
    case text
    /// `index,prediction,p0,...,p{K-1}` (`file,...` for images), outputs at full float precision.
    case csv
    /// JSON Lines: one object per sample, then one summary object.
    case json
    /// A NumPy `.npy` float32 array of shape (N, …output shape); N is written at the end.
    case npy
    /// Only the sample count and the accuracy.
    case summary
}

/// Where a report goes: standard output, or a file written atomically (`AtomicFile.Stream`:
/// a temporary file in the target's folder, renamed over it only when complete).
public final class ReportSink {
    private let handle: FileHandle
    private let file: AtomicFile.Stream?
    private let target: String?
    private var buffer = Data()

    public init(output: String?) throws {
        if let output {
            let file = try AtomicFile.Stream(replacing: output)
            self.file = file
            handle = file.handle
            target = output
        } else {
            handle = FileHandle.standardOutput
            file = nil
            target = nil
        }
    }

    /// Whether earlier bytes can be rewritten (a file, not a pipe).
    public var isSeekable: Bool { file != nil }

    public func write(_ text: String) throws { try write(Data(text.utf8)) }

    public func write(_ data: Data) throws {
        buffer.append(data)
        if buffer.count >= 1 << 20 { try flush() }
    }

    func flush() throws {
        guard !buffer.isEmpty else { return }
        do { try handle.write(contentsOf: buffer) } catch {
            throw CLIFailure.output("\(target ?? "standard output"): cannot write: \(error.localizedDescription)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Overwrites bytes at `offset` (after flushing what is buffered).
    func rewrite(_ data: Data, at offset: UInt64) throws {
        try flush()
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: data)
        try handle.seekToEnd()
    }

    /// Completes the report: the file is flushed to disk and renamed over the target.
    public func finish() throws {
        try flush()
        try file?.commit()
    }

    /// Drops a partial report (the target is left as it was).
    public func abandon() {
        file?.abandon()
    }
}

/// Writes a report tile by tile.
public final class ReportWriter {
    let format: ReportFormat
    let sink: ReportSink
    let outputShape: [Int]
    let keyed: Bool
    let top: Int?
    let classNames: [String]?
    let hasLabels: Bool
    private var rows = 0
    private var correct = 0
    private var npyHeaderLength = 0
    /// Whether each output is a vector of scores (at most one axis longer than 1), whose
    /// largest entry is the prediction. Other outputs (a segmentation map, an embedding
    /// grid) are written whole, with no prediction.
    let isScoreVector: Bool

    /// Whether outputs of this shape are score vectors with a predicted class.
    public static func isScoreVector(_ shape: [Int]) -> Bool { shape.filter { $0 > 1 }.count <= 1 }

    public init(format: ReportFormat, sink: ReportSink, outputShape: [Int], keyed: Bool, top: Int?, classNames: [String]?,
                hasLabels: Bool, expectedRows: Int?) throws {
        self.format = format
        self.sink = sink
        self.outputShape = outputShape
        self.keyed = keyed
        self.top = top ?? (classNames != nil ? 1 : nil)
        self.classNames = classNames
        self.hasLabels = hasLabels
        self.isScoreVector = Self.isScoreVector(outputShape)
        let k = outputShape.reduce(1, *)
        if !isScoreVector && (hasLabels || self.top != nil) {
            let shape = "(" + outputShape.map(String.init).joined(separator: ", ") + ")"
            throw CLIFailure.badInput("the model's output is a \(shape) array per sample, not a vector of class scores: "
                                      + "labels, --top and --class-names need class scores (the outputs are written whole; --format npy keeps their shape)")
        }
        switch format {
        case .csv:
            var header = (keyed ? "file" : "index") + (isScoreVector ? ",prediction" : "")
            if hasLabels { header += ",label" }
            if let top = self.top { for i in 1...top { header += ",top\(i),top\(i)_name,top\(i)_score" } }
            header += (0..<k).map { isScoreVector ? ",p\($0)" : ",o\($0)" }.joined() + "\n"
            try sink.write(header)
        case .npy:
            // The row count is written at the end: the header leaves room for any count.
            let header = Self.npyHeader(rows: expectedRows ?? 0, shape: outputShape)
            npyHeaderLength = header.count
            guard sink.isSeekable || expectedRows != nil else {
                throw CLIFailure.badInput("--format npy to standard output needs the sample count up front: use --output FILE")
            }
            try sink.write(header)
        default:
            break
        }
    }

    /// A `.npy` v1 header for float32 (rows, shape...), padded to a fixed 128 bytes.
    static func npyHeader(rows: Int, shape: [Int]) -> Data {
        let dims = ([rows] + shape).map(String.init).joined(separator: ", ") + (shape.isEmpty ? "," : "")
        var text = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        let total = max(128, (10 + text.count + 1 + 63) / 64 * 64)
        text += String(repeating: " ", count: total - 10 - text.count - 1) + "\n"
        var data = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0])
        data.append(UInt8((total - 10) & 0xFF))
        data.append(UInt8((total - 10) >> 8))
        data.append(contentsOf: Array(text.utf8))
        return data
    }

    private static func json(_ value: Float) -> String { value.isFinite ? "\(value)" : "null" }

    private func name(_ c: Int) -> String { classNames.map { c < $0.count ? $0[c] : "\(c)" } ?? "\(c)" }

    private func topK(_ row: UnsafeBufferPointer<Float>) -> [(Int, Float)] {
        guard let top else { return [] }
        return Array(row.enumerated().sorted { $0.element > $1.element || ($0.element == $1.element && $0.offset < $1.offset) }
            .prefix(top).map { ($0.offset, $0.element) })
    }

    /// Writes the rows of one tile: `outputs` holds `predictions.count` rows.
    public func write(outputs: UnsafeBufferPointer<Float>, predictions: [Int], keys: [String], labels: [Int]?) throws {
        let k = max(outputShape.reduce(1, *), 1)
        if let labels { correct += zip(predictions, labels).filter { $0 == $1 }.count }
        defer { rows += predictions.count }
        switch format {
        case .summary:
            return
        case .npy:
            var data = Data(count: predictions.count * k * 4)
            data.withUnsafeMutableBytes { raw in
                let target = raw.bindMemory(to: UInt32.self)
                for i in 0..<(predictions.count * k) { target[i] = outputs[i].bitPattern.littleEndian }
            }
            try sink.write(data)
            return
        default:
            break
        }
        var text = ""
        for (i, prediction) in predictions.enumerated() {
            let row = UnsafeBufferPointer(rebasing: outputs[(i * k)..<((i + 1) * k)])
            let key = keyed ? keys[i] : String(rows + i)
            let best = topK(row)
            switch format {
            case .text where !isScoreVector:
                // The whole output, row-major, after the key.
                text += key + "\t" + row.map { "\($0)" }.joined(separator: " ") + "\n"
            case .text:
                text += "\(key)\t\(prediction)"
                if !best.isEmpty { text += "\t" + best.map { "\(name($0.0)) \($0.1)" }.joined(separator: ", ") }
                text += "\n"
            case .csv:
                text += (keyed ? csvField(key) : key) + (isScoreVector ? ",\(prediction)" : "")
                if let labels { text += ",\(labels[i])" }
                for (c, score) in best { text += ",\(c),\(csvField(name(c))),\(score)" }
                for v in row { text += ",\(v)" }
                text += "\n"
            case .json:
                text += keyed ? "{\"file\":\(jsonString(key))" : "{\"index\":\(key)"
                text += isScoreVector ? ",\"prediction\":\(prediction)" : ",\"shape\":[" + outputShape.map(String.init).joined(separator: ",") + "]"
                if let labels { text += ",\"label\":\(labels[i])" }
                if !best.isEmpty {
                    text += ",\"top\":[" + best.map { "{\"class\":\($0.0),\"name\":\(jsonString(name($0.0))),\"score\":\(Self.json($0.1))}" }
                        .joined(separator: ",") + "]"
                }
                text += ",\"outputs\":[" + row.map(Self.json).joined(separator: ",") + "]}\n"
            default:
                break
            }
        }
        try sink.write(text)
    }

    /// Writes the closing lines (accuracy; skipped files) and completes the output. Formats
    /// with no place for a summary (csv, npy) list skipped files on stderr instead.
    public func finish(skipped: [(path: String, reason: String)]) throws {
        let accuracy = rows == 0 ? 0 : Double(correct) / Double(rows)
        var skippedOnStderr = false
        switch format {
        case .text, .summary:
            var text = "images: \(rows)\n"
            if hasLabels { text += "accuracy: \(String(format: "%.4f", accuracy)) (\(correct)/\(rows))\n" }
            if !skipped.isEmpty { text += "skipped: \(skipped.count)\n" + skipped.map { "  \(oneLine("\($0.path): \($0.reason)"))\n" }.joined() }
            try sink.write(text)
        case .json:
            var text = "{\"images\":\(rows)"
            if hasLabels { text += ",\"accuracy\":\(accuracy),\"correct\":\(correct)" }
            if !skipped.isEmpty { text += ",\"skipped\":[" + skipped.map { "{\"file\":\(jsonString($0.path)),\"reason\":\(jsonString($0.reason))}" }.joined(separator: ",") + "]" }
            try sink.write(text + "}\n")
        case .npy:
            if sink.isSeekable {
                let header = Self.npyHeader(rows: rows, shape: outputShape)
                guard header.count == npyHeaderLength else { throw CLIFailure.internalError("internal error: .npy header grew") }
                try sink.rewrite(header, at: 0)
            }
            skippedOnStderr = true
        case .csv:
            skippedOnStderr = true
        }
        try sink.finish()
        if skippedOnStderr && !skipped.isEmpty {
            FileHandle.standardError.write(Data(("bnrun: skipped \(skipped.count) file(s):\n" + skipped.map { "  \(oneLine("\($0.path): \($0.reason)"))\n" }.joined()).utf8))
        }
    }
}

func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}
