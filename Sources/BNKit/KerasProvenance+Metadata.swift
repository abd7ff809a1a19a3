import Foundation
import KerasHDF5
import ModelIR

/// Keras provenance stored in `.bin` metadata under `keras.*` keys, so
/// `.h5` → `.bin` → `.h5` writes the model back as it came.
extension KerasProvenance {
    private struct Entries: Codable {
        var layerNames: [String]
        var layerWeights: [String: [[String]]]  // layer -> [[name, node, role]]
    }

    var metadata: [String: String] {
        var result: [String: String] = ["keras.model_config": modelConfig]
        if let trainingConfig { result["keras.training_config"] = trainingConfig }
        if let kerasVersion { result["keras.keras_version"] = kerasVersion }
        if let backend { result["keras.backend"] = backend }
        let entries = Entries(layerNames: layerNames,
                              layerWeights: layerWeights.mapValues { $0.map { [$0.name, $0.node, $0.role.rawValue] } })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]  // the same model always gives the same bytes
        if let data = try? encoder.encode(entries) { result["keras.weights"] = String(decoding: data, as: UTF8.self) }
        return result
    }

    /// Rebuilds provenance from `.bin` metadata; nil when the file has none.
    /// Prefix of the state arrays that hold untracked layer weights in a `.bin`.
    static let untrackedPrefix = "keras.layer_weights/"

    /// Optimizer state plus untracked layer weights, as a `.bin` stores them.
    var nativeState: [NamedArray] {
        optimizerWeights + untrackedWeights.keys.sorted().flatMap { layer in
            untrackedWeights[layer]!.map { array in
                var renamed = array
                renamed.name = Self.untrackedPrefix + layer + "\u{0}" + array.name
                return renamed
            }
        }
    }

    init?(metadata: [String: String], optimizerState: [NamedArray]) {
        guard let config = metadata["keras.model_config"], let weightsJSON = metadata["keras.weights"],
              let entries = try? JSONDecoder().decode(Entries.self, from: Data(weightsJSON.utf8)) else { return nil }
        var layerWeights: [String: [WeightEntry]] = [:]
        for (layer, list) in entries.layerWeights {
            layerWeights[layer] = list.compactMap { item in
                guard item.count == 3, let role = WeightRole(rawValue: item[2]) else { return nil }
                return WeightEntry(name: item[0], node: item[1], role: role)
            }
        }
        var optimizer: [NamedArray] = []
        var untracked: [String: [NamedArray]] = [:]
        for array in optimizerState {
            if array.name.hasPrefix(Self.untrackedPrefix), let split = array.name.dropFirst(Self.untrackedPrefix.count).firstIndex(of: "\u{0}") {
                let rest = array.name.dropFirst(Self.untrackedPrefix.count)
                var original = array
                original.name = String(rest[rest.index(after: split)...])
                untracked[String(rest[..<split]), default: []].append(original)
            } else {
                optimizer.append(array)
            }
        }
        self.init(modelConfig: config, trainingConfig: metadata["keras.training_config"], kerasVersion: metadata["keras.keras_version"],
                  backend: metadata["keras.backend"], layerNames: entries.layerNames, layerWeights: layerWeights,
                  optimizerWeights: optimizer, untrackedWeights: untracked)
    }
}
