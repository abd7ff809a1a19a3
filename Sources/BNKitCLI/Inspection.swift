import BNFolding
import BNKit
import Foundation
import ModelIR
import NativeFormat

/// `bnconv inspect`: what a model file holds, in text.
public func inspectModel(path: String) throws -> String {
    let model = try Model.load(path: path)
    let graph = model.graph
    var lines: [String] = []
    switch model.sourceFormat {
    case .native:
        lines.append("format: bnkit .bin, version \(NativeFormat.version); checksums of preamble, header and data verified")
        for (key, value) in model.metadata.sorted(by: { $0.key < $1.key }) where !key.hasPrefix("keras.") {
            lines.append("metadata \(key): \(value)")
        }
        if model.keras != nil { lines.append("carries the Keras config it came from (writes back to .h5 as it came)") }
    case .kerasHDF5, .kerasArchive, .onnx, nil:
        lines.append("format: \(model.sourceFormat?.rawValue ?? "?")"
                     + (model.keras?.kerasVersion.map { ", keras_version \($0)" } ?? "")
                     + (model.keras?.backend.map { ", backend \($0)" } ?? ""))
    }
    if let state = model.keras?.optimizerWeights, !state.isEmpty {
        lines.append("optimizer state: \(state.count) arrays")
    }
    lines.append("model: \(graph.name)")
    let shapes = try graph.inferShapes()
    let nameWidth = min(max(graph.nodes.map(\.name.count).max() ?? 4, 4), 40)
    lines.append("")
    lines.append(pad("layer", nameWidth) + "  " + pad("op", 20) + "  " + pad("output shape", 16) + "  " + pad("params", 9) + "  inputs")
    var total = 0
    for node in graph.nodes {
        let params = node.sharesWeightsWith == nil ? node.operation.parameterCount : 0
        total += params
        var detail = node.inputs.joined(separator: ", ")
        if let owner = node.sharesWeightsWith { detail += "  (weights shared with \(owner))" }
        lines.append(pad(node.name, nameWidth) + "  " + pad(describe(node.operation), 20) + "  "
                     + pad("(" + shapes[node.name]!.map(String.init).joined(separator: ", ") + ")", 16) + "  "
                     + pad(String(params), 9) + "  " + detail)
    }
    lines.append("total parameters: \(total)")
    let norms = graph.nodes.compactMap { node -> (String, BatchNorm)? in
        if case .batchNorm(let bn) = node.operation { return (node.name, bn) } else { return nil }
    }
    if !norms.isEmpty {
        lines.append("")
        lines.append("BatchNormalization statistics:")
        for (name, bn) in norms {
            let mean = bn.movingMean.values, variance = bn.movingVariance.values
            lines.append("  \(name): \(bn.channels) channels, epsilon \(bn.epsilon), moving mean [\(mean.min()!), \(mean.max()!)], "
                         + "moving variance [\(variance.min()!), \(variance.max()!)]"
                         + (bn.gamma == nil ? ", no gamma (scale=False)" : "") + (bn.beta == nil ? ", no beta (center=False)" : ""))
        }
        lines.append("")
        lines.append("fold plan:")
        for event in try BNFolder.fold(graph).events { lines.append("  \(event)") }
    } else {
        lines.append("no BatchNormalization layers (nothing to fold)")
    }
    return lines.joined(separator: "\n") + "\n"
}

private func describe(_ op: Op) -> String {
    switch op {
    case .dense(let d): d.activation == .linear ? "dense" : "dense+\(d.activation.name)"
    case .conv2d(let c): "conv2d \(c.window.size[0])x\(c.window.size[1])" + (c.activation == .linear ? "" : "+\(c.activation.name)")
    case .depthwiseConv2d(let c): "depthwise \(c.window.size[0])x\(c.window.size[1])" + (c.activation == .linear ? "" : "+\(c.activation.name)")
    case .activation(let a): a.name
    default: op.kind
    }
}

private func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
