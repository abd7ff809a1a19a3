import HDF5
import ModelIR

/// Every way a Keras model file can be wrong, each naming the file and,
/// where it applies, the layer and weight.
public enum KerasFileError: Error, CustomStringConvertible, Sendable {
    /// The file does not exist or cannot be read.
    case unreadable(path: String, detail: String)
    /// The file is not HDF5 (or is truncated so badly it no longer is).
    case notHDF5(path: String)
    /// libhdf5 refused an operation (a damaged or truncated file).
    case hdf5(path: String, HDF5Error)
    /// No `model_config` attribute: a weights-only file or not a Keras model.
    case missingModelConfig(path: String, weightsOnly: Bool)
    /// A `.keras` archive that cannot be read as one.
    case badArchive(path: String, detail: String)
    /// Content bnkit refuses to follow: soft or external links, virtual or
    /// external storage, unknown filters (what a crafted file uses).
    case unsafeContent(path: String, detail: String)
    /// A required group or attribute is missing.
    case missing(path: String, what: String)
    /// The model configuration is not the JSON Keras writes.
    case badConfig(path: String, detail: String)
    /// The top-level model class is not supported.
    case unsupportedModel(path: String, className: String)
    /// A layer class that bnkit does not support (yet).
    case unsupportedLayer(path: String, layer: String, className: String)
    /// A supported layer class used with an option bnkit does not support.
    case unsupportedFeature(path: String, layer: String, className: String, feature: String)
    /// A layer's stored weights do not match what the layer needs.
    case badWeights(path: String, layer: String, detail: String)
    /// The layers do not fit together.
    case inconsistentModel(path: String, ModelError)

    public var description: String {
        switch self {
        case let .unreadable(path, detail):
            "\(path): cannot read the file: \(detail)"
        case let .notHDF5(path):
            "\(path): not an HDF5 file (empty, truncated or another format)"
        case let .hdf5(path, error):
            "\(path): damaged or unreadable HDF5 file: \(error)"
        case let .missingModelConfig(path, weightsOnly):
            weightsOnly
                ? "\(path): a weights-only file (save_weights) without 'model_config'; the architecture is needed: save the whole model with model.save('model.h5')"
                : "\(path): no 'model_config' attribute; not a Keras model file"
        case let .badArchive(path, detail):
            "\(path): invalid .keras archive: \(detail)"
        case let .unsafeContent(path, detail):
            "\(path): refused: \(detail)"
        case let .missing(path, what):
            "\(path): missing \(what)"
        case let .badConfig(path, detail):
            "\(path): invalid model_config: \(detail)"
        case let .unsupportedModel(path, className):
            "\(path): model class '\(className)' is not supported (Sequential and Functional are)"
        case let .unsupportedLayer(path, layer, className):
            "\(path): layer '\(layer)' of class '\(className)' is not supported"
        case let .unsupportedFeature(path, layer, className, feature):
            "\(path): layer '\(layer)' (\(className)): \(feature) is not supported"
        case let .badWeights(path, layer, detail):
            "\(path): layer '\(layer)': \(detail)"
        case let .inconsistentModel(path, error):
            "\(path): \(error)"
        }
    }
}
