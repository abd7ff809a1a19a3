import Foundation
import KerasHDF5
import ModelIR
import NativeFormat

/// The model file formats bnkit reads, recognised by content (never by name).
public enum ModelFileFormat: String, Sendable {
    case native = "bnkit .bin"
    case kerasHDF5 = "Keras HDF5 (.h5)"
    case kerasArchive = "Keras 3 archive (.keras)"

    static let hdf5Signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Detects the format from the file's first bytes.
    public static func detect(path: String) throws -> ModelFileFormat {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CLIFailure.badInput(FileManager.default.fileExists(atPath: path)
                ? "\(path): cannot read the file: permission denied or not a regular file"
                : "\(path): no such file")
        }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 8)) ?? Data())
        if head.isEmpty { throw CLIFailure.badInput("\(path): the file is empty") }
        if head == NativeFormat.magic { return .native }
        if head == hdf5Signature { return .kerasHDF5 }
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return .kerasArchive }
        throw CLIFailure.badInput("\(path): not a model file bnkit knows (expected a Keras .h5 or .keras, or a bnkit .bin)")
    }
}

/// Loads a model from a Keras `.h5` or a bnkit `.bin`.
public func loadModel(path: String) throws -> (graph: Graph, format: ModelFileFormat) {
    let format = try ModelFileFormat.detect(path: path)
    switch format {
    case .native: return (try NativeFormat.read(path: path).graph, format)
    case .kerasHDF5, .kerasArchive: return (try KerasModelReader.read(path: path).graph, format)
    }
}
