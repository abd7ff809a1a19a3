import AtomicFile
import Foundation
import ScratchFiles
import KerasHDF5
@_exported import ModelIR
import NativeFormat
import ONNXFormat

/// The model file formats bnkit reads and writes, recognised by content.
public enum ModelFormat: String, Sendable, CaseIterable {
    /// bnkit's own format (`.bin`, docs/FORMAT.md): read and write.
    case native = "bnkit .bin"
    /// The classic Keras HDF5 layout (`.h5`): read and write.
    case kerasHDF5 = "Keras HDF5 (.h5)"
    /// Keras 3 `.keras` archives: read.
    case kerasArchive = "Keras 3 archive (.keras)"
    /// ONNX (`.onnx`): read (NCHW graphs: PyTorch, the model zoo) and write (opset 17, the input
    /// in Keras's channels-last layout).
    case onnx = "ONNX (.onnx)"

    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    static let zipSignature: [UInt8] = [0x50, 0x4B, 0x03, 0x04]

    /// Detects the format from a file's first bytes; nil when none matches.
    public static func detect(header: [UInt8]) -> ModelFormat? {
        if header.starts(with: NativeFormat.magic) { return .native }
        if header.starts(with: hdf5Signature) { return .kerasHDF5 }
        if header.starts(with: zipSignature) { return .kerasArchive }
        if ONNXReader.recognizes(header: header) { return .onnx }
        return nil
    }

    /// The format a file name's extension asks for when saving (`.bin`, `.h5`/`.hdf5`).
    public static func forSaving(path: String) -> ModelFormat? {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "bin": .native
        case "h5", "hdf5": .kerasHDF5
        case "onnx": .onnx
        default: nil
        }
    }
}

/// Library-level failures; file-format failures keep their own typed errors
/// (`KerasFileError`, `NativeFormatError`), each naming the file.
public enum BNKitError: Error, CustomStringConvertible, Equatable, Sendable {
    case noSuchFile(path: String)
    case emptyFile(path: String)
    case unknownFormat(path: String)
    case cannotSave(path: String, format: String, reason: String)
    case noSuchLayer(layer: String)
    case noSuchWeight(layer: String, role: WeightRole)
    case weightShapeMismatch(layer: String, role: WeightRole, expected: [Int], found: [Int])
    /// The isolated HDF5 reader died, ran out of time or failed on the file.
    case damagedHDF5(path: String, detail: String)
    /// The isolated HDF5 reader refused the file; its one-line message (naming the file).
    case reported(String)
    /// The HDF5 reader executable could not be started.
    case hdf5ReaderUnavailable(executable: String, reason: String)

    public var description: String {
        switch self {
        case let .noSuchFile(path): "\(path): no such file"
        case let .emptyFile(path): "\(path): the file is empty"
        case let .unknownFormat(path): "\(path): not a model file bnkit knows (expected a Keras .h5 or .keras, or a bnkit .bin)"
        case let .cannotSave(path, format, reason): "\(path): cannot save as \(format): \(reason)"
        case let .noSuchLayer(layer): "no layer named '\(layer)'"
        case let .noSuchWeight(layer, role): "layer '\(layer)' has no weight '\(role.rawValue)'"
        case let .weightShapeMismatch(layer, role, expected, found):
            "layer '\(layer)': weight '\(role.rawValue)' must have shape \(expected), got \(found)"
        case let .damagedHDF5(path, detail): "\(path): damaged or unsupported HDF5 file: \(detail)"
        case let .reported(message): message
        case let .hdf5ReaderUnavailable(executable, reason): "cannot start the HDF5 reader \(executable): \(reason)"
        }
    }
}

/// A network with its BatchNormalization statistics, optimizer state and
/// metadata: load it from any supported file, read and change its weights,
/// save it as Keras HDF5 or bnkit `.bin`.
///
/// ```swift
/// var model = try Model.load(path: "model.h5")
/// let gamma = try model.weight(.gamma, of: "batch_normalization")
/// try model.setWeight(.movingVariance, of: "batch_normalization", to: newVariance)
/// try model.save(to: "model.bin")
/// ```
public struct Model: Sendable {
    /// The layers and their connections.
    public var graph: Graph
    /// Free-form metadata (saved in `.bin` files).
    public var metadata: [String: String]
    /// What a Keras file carried besides the graph (configs, weight names,
    /// optimizer state), so a model read from Keras is written back as it came.
    public var keras: KerasProvenance?
    /// The format the model was loaded from (nil for models built in code).
    public private(set) var sourceFormat: ModelFormat?

    /// A model built in code.
    public init(graph: Graph, metadata: [String: String] = [:]) {
        self.graph = graph
        self.metadata = metadata
    }

    // MARK: Loading

    /// Loads a model from a file, recognising its format by content.
    public static func load(path: String) throws -> Model {
        guard FileManager.default.fileExists(atPath: path) else { throw BNKitError.noSuchFile(path: path) }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw KerasFileError.unreadable(path: path, detail: "permission denied or not a regular file")
        }
        let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        try? handle.close()
        if head.isEmpty { throw BNKitError.emptyFile(path: path) }
        guard let format = ModelFormat.detect(header: head) else { throw BNKitError.unknownFormat(path: path) }
        switch format {
        case .native:
            return try readNative(path, name: path)
        case .onnx:
            let onnx = try ONNXReader.read(path: path)
            var model = Model(graph: onnx.graph, metadata: onnx.metadata)
            model.sourceFormat = .onnx
            return model
        case .kerasHDF5, .kerasArchive:
            var model: Model
            switch HDF5ChildProcess.isolation {
            case .inProcess:
                let keras = try KerasModelReader.read(path: path)
                model = Model(graph: keras.graph)
                model.keras = keras.provenance
            case .childProcess(let executable):
                model = try HDF5ChildProcess.read(path: path, executable: executable)
            }
            model.sourceFormat = format
            return model
        }
    }

    /// The `.bin` encoding of the model with everything a Keras file carried (how an
    /// isolated HDF5 reader hands a model back).
    func nativeEncoding() throws -> Data {
        try NativeFormat.encode(NativeModel(graph: graph, metadata: nativeMetadata(), optimizerState: keras?.nativeState ?? []))
    }

    /// Reads a `.bin` file (validated like any; mapped, weights in place); `name` appears in errors.
    static func readNative(_ path: String, name: String) throws -> Model {
        let native: NativeModel
        do {
            native = try NativeFormat.read(path: path)
        } catch {
            throw name == path ? error : renamed(error, from: path, to: name)
        }
        var model = Model(graph: native.graph, metadata: native.metadata)
        model.keras = KerasProvenance(metadata: native.metadata, optimizerState: native.optimizerState)
        model.sourceFormat = .native
        return model
    }

    /// Loads a model held in memory (format by content); `name` appears in errors.
    public static func load(data: Data, name: String = "<memory>") throws -> Model {
        if ONNXReader.recognizes(header: [UInt8](data.prefix(8))) {
            let onnx = try ONNXReader.decode(data, name: name)
            var model = Model(graph: onnx.graph, metadata: onnx.metadata)
            model.sourceFormat = .onnx
            return model
        }
        if data.starts(with: NativeFormat.magic) {
            let native = try NativeFormat.decode(data, path: name)
            var model = Model(graph: native.graph, metadata: native.metadata)
            model.keras = KerasProvenance(metadata: native.metadata, optimizerState: native.optimizerState)
            model.sourceFormat = .native
            return model
        }
        // libhdf5 and the zip reader work on files: go through a private temporary one.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-\(UUID().uuidString)")
        let scratch = try ScratchFiles.makeTrackedFolder(folder.path)
        defer {
            try? FileManager.default.removeItem(at: folder)
            ScratchFiles.untrack(scratch)
        }
        let file = folder.appendingPathComponent("model")
        try data.write(to: file)
        do {
            return try load(path: file.path)
        } catch {
            throw renamed(error, from: file.path, to: name)
        }
    }

    // MARK: Saving

    /// Saves the model atomically (temporary file in the target's folder,
    /// flushed, renamed over the target). The format comes from `format`, or
    /// from the extension (`.bin`, `.h5`). Returns notices (e.g. state that a
    /// Keras file cannot keep).
    @discardableResult
    public func save(to path: String, format: ModelFormat? = nil) throws -> [String] {
        guard let format = format ?? ModelFormat.forSaving(path: path) else {
            throw BNKitError.cannotSave(path: path, format: "?", reason: "say the format, or use a .bin or .h5 extension")
        }
        switch format {
        case .native:
            try AtomicFile.write(try nativeEncoding(), to: path)
            return []
        case .kerasHDF5:
            var notices: [String] = []
            try AtomicFile.replace(path) { temporary in
                notices = try KerasModelWriter.write(graph, provenance: keras, to: temporary)
            }
            return notices
        case .onnx:
            let data: Data
            do {
                data = try ONNXWriter.encode(graph, metadata: metadata)
            } catch let error as ONNXWriteError {
                throw BNKitError.cannotSave(path: path, format: format.rawValue, reason: "\(error)")
            }
            try AtomicFile.write(data, to: path)
            return []
        case .kerasArchive:
            throw BNKitError.cannotSave(path: path, format: format.rawValue, reason: "bnkit reads .keras archives but writes .h5 and .bin")
        }
    }

    /// Metadata for a `.bin`: the user's, plus the Keras provenance so a later
    /// `.bin` → `.h5` writes the model back as it came.
    private func nativeMetadata() -> [String: String] {
        var result = metadata
        if let keras { result.merge(keras.metadata) { _, new in new } }
        return result
    }

    // MARK: Layers and weights

    /// A layer and the weights it holds.
    public struct Layer: Sendable, Equatable {
        public let name: String
        /// The op kind: `dense`, `conv2d`, `batch_norm`, ...
        public let kind: String
        public let inputs: [String]
        /// The roles of its weights with their shapes.
        public let weights: [WeightInfo]
        /// Set when this layer is a repeated call sharing another layer's weights.
        public let sharesWeightsWith: String?
    }

    public struct WeightInfo: Sendable, Equatable {
        public let role: WeightRole
        public let shape: [Int]
    }

    /// The layers in order.
    public var layers: [Layer] {
        graph.nodes.map { node in
            Layer(name: node.name, kind: node.operation.kind, inputs: node.inputs,
                  weights: node.operation.weights.map { WeightInfo(role: $0.role, shape: $0.tensor.shape) },
                  sharesWeightsWith: node.sharesWeightsWith)
        }
    }

    /// A layer's weight by role (kernel, bias, gamma, beta, moving_mean, moving_variance, ...).
    public func weight(_ role: WeightRole, of layer: String) throws -> Tensor {
        guard let node = graph.node(named: layer) else { throw BNKitError.noSuchLayer(layer: layer) }
        guard let tensor = node.operation.weights.first(where: { $0.role == role })?.tensor else {
            throw BNKitError.noSuchWeight(layer: layer, role: role)
        }
        return tensor
    }

    /// Replaces a layer's weight; the shape must stay the same. Layers that
    /// share the weights (repeated calls) are updated too.
    public mutating func setWeight(_ role: WeightRole, of layer: String, to tensor: Tensor) throws {
        let current = try weight(role, of: layer)
        guard current.shape == tensor.shape else {
            throw BNKitError.weightShapeMismatch(layer: layer, role: role, expected: current.shape, found: tensor.shape)
        }
        let owner = graph.node(named: layer)?.sharesWeightsWith ?? layer
        for index in graph.nodes.indices where graph.nodes[index].name == owner || graph.nodes[index].sharesWeightsWith == owner {
            graph.nodes[index].operation = try graph.nodes[index].operation.replacingWeight(role, with: tensor)
        }
    }
}

private func renamed(_ error: Error, from path: String, to name: String) -> Error {
    // Errors name the temporary file; say `name` instead.
    struct Renamed: Error, CustomStringConvertible { let description: String }
    return Renamed(description: "\(error)".replacingOccurrences(of: path, with: name))
}
