import Foundation
import ScratchFiles
import HDF5
import ModelIR
import ZIPFoundation

/// Keras 3 `.keras` archives: a zip holding `config.json`, `metadata.json`
/// and `model.weights.h5` (weights under `layers/<name>/vars/<index>`).
enum KerasArchive {
    /// Largest weights file bnkit extracts (to a temporary file, never into memory).
    static let maxMemberBytes: UInt64 = 2 << 30
    /// config.json is read into memory: no Keras config comes near this.
    static let maxConfigBytes: UInt64 = 16 << 20
    /// Above this size a member must not compress better than `maxCompressionRatio`:
    /// Keras stores members uncompressed, and float weights barely compress (about 1.1:1;
    /// pruned, mostly-zero ones a few times more), so a higher ratio is a decompression bomb.
    static let ratioCheckedAbove: UInt64 = 16 << 20
    static let maxCompressionRatio: UInt64 = 50

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
        let archiveBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? .max
        /// The member's entry after checking its declared sizes (before anything is inflated).
        func entry(_ name: String, limit: UInt64) throws -> Entry {
            guard let entry = archive[name] else { throw KerasFileError.missing(path: path, what: "'\(name)' in the archive") }
            // A symlink or folder entry is read whole by ZIPFoundation, sized by its local header.
            guard entry.type == .file else {
                throw KerasFileError.badArchive(path: path, detail: "'\(name)' is a \(entry.type == .symlink ? "symbolic link" : "folder") entry, not a file")
            }
            guard entry.compressedSize <= archiveBytes else {
                throw KerasFileError.badArchive(path: path, detail: "'\(name)' declares \(entry.compressedSize) stored bytes, more than the archive's \(archiveBytes)")
            }
            guard entry.uncompressedSize <= limit else {
                throw KerasFileError.badArchive(path: path, detail: "'\(name)' declares \(entry.uncompressedSize) bytes, over the \(limit)-byte limit")
            }
            if entry.uncompressedSize > ratioCheckedAbove, entry.uncompressedSize / maxCompressionRatio > max(entry.compressedSize, 1) {
                throw KerasFileError.badArchive(path: path, detail: "'\(name)' would inflate \(entry.compressedSize) bytes to \(entry.uncompressedSize)"
                    + " (over \(maxCompressionRatio):1; no real weights file compresses so well: a decompression bomb?)")
            }
            return entry
        }
        /// Inflates a member chunk by chunk into `sink`, never beyond its declared size.
        func extract(_ name: String, limit: UInt64, into sink: (Data) throws -> Void) throws {
            let entry = try entry(name, limit: limit)
            var written: UInt64 = 0
            do {
                _ = try archive.extract(entry, skipCRC32: false) { chunk in
                    written += UInt64(chunk.count)
                    if written > entry.uncompressedSize {
                        throw KerasFileError.badArchive(path: path, detail: "'\(name)' inflates beyond its declared \(entry.uncompressedSize) bytes")
                    }
                    try sink(chunk)
                }
            } catch let error as KerasFileError {
                throw error
            } catch {
                throw KerasFileError.badArchive(path: path, detail: "cannot extract '\(name)' (damaged archive)")
            }
        }
        func member(_ name: String, limit: UInt64) throws -> Data {
            var data = Data()
            try extract(name, limit: limit) { data.append($0) }
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
        // libhdf5 reads files: the weights stream into a private temporary file (memory stays
        // flat whatever their size), which is read and deleted.
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-\(UUID().uuidString).weights.h5")
        let output: FileHandle, scratch: ScratchFiles.Token
        do {
            (output, scratch) = try ScratchFiles.createTrackedFile(temporary.path, permissions: 0o600)
        } catch {
            throw KerasFileError.unreadable(path: path, detail: "cannot extract the weights to \(temporary.path)")
        }
        defer {
            try? FileManager.default.removeItem(at: temporary)
            ScratchFiles.untrack(scratch)
        }
        do {
            defer { try? output.close() }
            try extract("model.weights.h5", limit: maxMemberBytes) { chunk in
                do { try output.write(contentsOf: chunk) } catch {
                    throw KerasFileError.unreadable(path: path, detail: "cannot extract the weights to \(temporary.path)")
                }
            }
        }
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
