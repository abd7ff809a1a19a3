import BNKit
import Foundation

/// Loads a model from a Keras `.h5` / `.keras` or a bnkit `.bin` (format by content).
public func loadModel(path: String) throws -> (graph: Graph, format: ModelFormat) {
    let model = try Model.load(path: path)
    return (model.graph, model.sourceFormat ?? .native)
}
