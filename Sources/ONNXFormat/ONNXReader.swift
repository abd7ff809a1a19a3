import Foundation
import ModelIR
import ONNXProto
import SwiftProtobuf

/// Why an ONNX file cannot be read; every message names the file.
public enum ONNXReadError: Error, CustomStringConvertible, Equatable, Sendable {
    case damaged(path: String, detail: String)
    case unsupported(path: String, node: String, op: String, detail: String)

    public var description: String {
        switch self {
        case let .damaged(path, detail): "\(path): not a readable ONNX model: \(detail)"
        case let .unsupported(path, node, op, detail): "\(path): node '\(node)' (\(op)): \(detail) is not supported"
        }
    }
}

/// A model read from ONNX.
public struct ONNXModel: Sendable {
    public var graph: Graph
    /// `metadata_props`, and the producer's name and version.
    public var metadata: [String: String]
}

/// Reads ONNX models (NCHW graphs from PyTorch, the model zoo, bnkit's own export) into the
/// channels-last `Graph`, knowing nothing of kernels.
///
/// The user feeds the layout the graph declares (N, C, H, W): one transpose at the input turns
/// it channels-last, weights are laid out for the runtime's kernels once here, Flatten and
/// Reshape keep ONNX's element order (a transpose before them where the order differs), and a
/// map output is transposed back to the layout the graph declares. Shape arithmetic on
/// constants (Shape → Gather → Unsqueeze → Concat → Reshape, as PyTorch exports `view`) is
/// folded. Anything else is refused with the node's name and op type.
///
/// Bounded like the `.bin` reader: sizes are checked against the bytes present before any
/// tensor is converted, message nesting is limited, external data files are refused.
public enum ONNXReader {
    public static let maxBytes = 2 << 30
    static let maxNodes = 200_000

    /// Whether a file's first bytes look like a serialized ModelProto (field 1, ir_version, first).
    public static func recognizes(header: [UInt8]) -> Bool {
        header.count >= 2 && header[0] == 0x08 && (1...20).contains(header[1])
    }

    public static func read(path: String) throws -> ONNXModel {
        let data: Data
        do {
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
            guard size <= maxBytes else { throw ONNXReadError.damaged(path: path, detail: "larger than \(maxBytes) bytes") }
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch let error as ONNXReadError {
            throw error
        } catch {
            throw ONNXReadError.damaged(path: path, detail: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, name: path)
    }

    public static func decode(_ data: Data, name: String = "<memory>") throws -> ONNXModel {
        guard data.count <= maxBytes else { throw ONNXReadError.damaged(path: name, detail: "larger than \(maxBytes) bytes") }
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = 48
        options.discardUnknownFields = true
        let model: Onnx_ModelProto
        do {
            model = try Onnx_ModelProto(serializedBytes: data, options: options)
        } catch {
            throw ONNXReadError.damaged(path: name, detail: "the protobuf does not decode (\(error))")
        }
        guard model.hasGraph else { throw ONNXReadError.damaged(path: name, detail: "no graph") }
        guard model.graph.node.count <= maxNodes else { throw ONNXReadError.damaged(path: name, detail: "more than \(maxNodes) nodes") }
        let opset = model.opsetImport.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version ?? 13
        var importer = Importer(path: name, opset: Int(opset))
        let graph = try importer.convert(model.graph)
        var metadata = Dictionary(model.metadataProps.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        if !model.producerName.isEmpty { metadata["onnx.producer"] = model.producerName + (model.producerVersion.isEmpty ? "" : " " + model.producerVersion) }
        metadata["onnx.opset"] = String(opset)
        return ONNXModel(graph: graph, metadata: metadata)
    }
}
