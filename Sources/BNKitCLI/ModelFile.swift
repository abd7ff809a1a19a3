import BNKit
import Foundation

/// Loads a model from a Keras `.h5` / `.keras` or a bnkit `.bin` (format by content).
public func loadModel(path: String) throws -> (graph: Graph, format: ModelFormat) {
    let model = try Model.load(path: path)
    return (model.graph, model.sourceFormat ?? .native)
}

/// First thing in bnconv and bnrun: in a child started to parse a Keras file, do that
/// and exit; otherwise have Keras files parsed by such a child of this same executable
/// (libhdf5 crashing or looping on a damaged file then becomes an error message).
public func isolateHDF5Parsing() {
    HDF5ChildProcess.serveIfRequested()
    if ProcessInfo.processInfo.environment["BNKIT_HDF5_IN_PROCESS"] == "1" {
        HDF5ChildProcess.isolation = .inProcess
    } else {
        HDF5ChildProcess.isolation = .childProcess(executable: HDF5ChildProcess.currentExecutable)
    }
}
