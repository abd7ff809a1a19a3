import Foundation
import HDF5
import ModelIR
import ZIPFoundation

/// Keras 3 `.keras` archives: a zip holding `config.json`, `metadata.json`
/// and `model.weights.h5` (weights under `layers/<name>/vars/<index>`).
enum KerasArchive {
    /// Largest member bnkit extracts (a zip bomb is refused before it is inflated).
    static let maxMemberBytes: UInt64 = 2 << 30
    static let maxConfigBytes: UInt64 = 64 << 20

    /// Whether the file starts with a zip local-file header.
    static func isZip(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)).map { [UInt8]($0) == [0x50, 0x4B, 0x03, 0x04] } ?? false
    }

    static func read(path: String) throws -> KerasModel {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw KerasFileError.badArchive(path: path, detail: "not a readable zip archive")
        }
        func member(_ name: String, limit: UInt64) throws -> Data {
            guard let entry = archive[name] else { throw KerasFileError.missing(path: path, what: "'\(name)' in the archive") }
            guard entry.uncompressedSize <= limit else {
                throw KerasFileError.badArchive(path: path, detail: "'\(name)' declares \(entry.uncompressedSize) bytes, over the \(limit)-byte limit")
            }
            var data = Data()
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    data.append(chunk)
                    if UInt64(data.count) > limit { throw KerasFileError.badArchive(path: path, detail: "'\(name)' inflates beyond its declared size") }
                }
            } catch let error as KerasFileError {
                throw error
            } catch {
                throw KerasFileError.badArchive(path: path, detail: "cannot extract '\(name)' (damaged archive)")
            }
            return data
        }
        let configData = try member("config.json", limit: maxConfigBytes)
        guard let json = String(data: configData, encoding: .utf8) else {
            throw KerasFileError.badConfig(path: path, detail: "config.json is not UTF-8")
        }
        let config = try ModelConfigParser(path: path).parse(json: json)
        var version: String?
        if archive["metadata.json"] != nil,
           let metadata = try? JSONSerialization.jsonObject(with: try member("metadata.json", limit: 1 << 20)) as? [String: Any] {
            version = metadata["keras_version"] as? String
        }
        // libhdf5 reads files: extract the weights next to nothing else, read, delete.
        let weightsData = try member("model.weights.h5", limit: maxMemberBytes)
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-\(UUID().uuidString).weights.h5")
        do {
            try weightsData.write(to: temporary)
        } catch {
            throw KerasFileError.unreadable(path: path, detail: "cannot extract the weights to \(temporary.path)")
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        let shown = path + ":model.weights.h5"
        let file = try KerasModelReader.openHDF5(temporary.path, shownAs: shown)
        do {
            let root = try file.root()
            let layers = try root.hasChild("layers") ? try root.group("layers") : nil
            let source = try ArchiveWeights(path: path, layersGroup: layers, layers: config.layers)
            let graph = try GraphBuilder(path: path, kerasVersion: version).build(config, weights: source)
            return KerasModel(graph: graph, kerasVersion: version, backend: nil, container: .archive, provenance: nil)
        } catch let error as HDF5Error {
            throw KerasFileError.hdf5(path: shown, error)
        }
    }
}
