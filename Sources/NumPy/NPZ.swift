import Foundation
import ScratchFiles
import ZIPFoundation

/// `.npz` archives (`numpy.savez`, `savez_compressed`): zip files of `.npy` members.
public enum NPZ {
    /// The arrays an archive holds (member names without `.npy`).
    public static func arrayNames(path: String) throws(NPYError) -> [String] {
        try archive(path).compactMap { $0.path.hasSuffix(".npy") ? String($0.path.dropLast(4)) : nil }.sorted()
    }

    /// Largest member extracted; and above 16 MiB a member must not compress better than
    /// 50:1 (numeric data does not; a decompression bomb does). Checked from the declared
    /// sizes before anything is inflated, and inflating never goes past the declared size. (The
    /// ratio is tested by dividing the inflated size: a crafted archive declares any compressed
    /// size, and 50 times it overflowed.)
    static let maxMemberBytes: UInt64 = 1 << 40
    static let ratioCheckedAbove: UInt64 = 16 << 20
    static let maxCompressionRatio: UInt64 = 50

    /// Opens the array `name` (or the only array when `name` is nil): the member streams
    /// into a private temporary file, which is mapped and removed.
    public static func open(path: String, array name: String?) throws(NPYError) -> NPYFile {
        let archive = try archive(path)
        let names = archive.compactMap { $0.path.hasSuffix(".npy") ? String($0.path.dropLast(4)) : nil }.sorted()
        let chosen: String
        if let name {
            guard names.contains(name) else {
                throw NPYError(path: path, detail: "no array '\(name)' (arrays: \(names.joined(separator: ", ")))")
            }
            chosen = name
        } else {
            guard names.count == 1 else {
                throw NPYError(path: path, detail: names.isEmpty ? "holds no .npy arrays"
                               : "holds \(names.count) arrays (\(names.joined(separator: ", "))): choose one with --array NAME")
            }
            chosen = names[0]
        }
        let shown = "\(path):\(chosen).npy"
        guard let entry = archive["\(chosen).npy"] else { throw NPYError(path: shown, detail: "missing") }
        // A symlink or folder entry is read whole by ZIPFoundation, sized by its local header.
        guard entry.type == .file else { throw NPYError(path: shown, detail: "is a \(entry.type == .symlink ? "symbolic link" : "folder") entry, not a file") }
        let archiveBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? .max
        guard entry.compressedSize <= archiveBytes else {
            throw NPYError(path: shown, detail: "declares \(entry.compressedSize) stored bytes, more than the archive's \(archiveBytes)")
        }
        guard entry.uncompressedSize <= maxMemberBytes,
              entry.uncompressedSize <= ratioCheckedAbove || entry.uncompressedSize / maxCompressionRatio <= max(entry.compressedSize, 1) else {
            throw NPYError(path: shown, detail: "would inflate \(entry.compressedSize) bytes to \(entry.uncompressedSize) (a decompression bomb?)")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bnkit-npz-\(UUID().uuidString)")
        let scratch: ScratchFiles.Token
        do {
            scratch = try ScratchFiles.makeTrackedFolder(folder.path)
        } catch {
            throw NPYError(path: shown, detail: "cannot create a temporary folder")
        }
        defer {
            try? FileManager.default.removeItem(at: folder)
            ScratchFiles.untrack(scratch)
        }
        let file = folder.appendingPathComponent("array.npy")
        guard let handle = ScratchFiles.createFile(file.path, permissions: 0o600) else {
            throw NPYError(path: shown, detail: "cannot extract to a temporary file")
        }
        var written: UInt64 = 0
        do {
            defer { try? handle.close() }
            _ = try archive.extract(entry, skipCRC32: false) { chunk in
                written += UInt64(chunk.count)
                guard written <= entry.uncompressedSize else { throw NPYError(path: shown, detail: "inflates beyond its declared size") }
                try handle.write(contentsOf: chunk)
            }
        } catch let error as NPYError {
            throw error
        } catch {
            throw NPYError(path: shown, detail: "cannot extract (damaged archive)")
        }
        // The mapping outlives the file's name.
        return try NPYFile(path: file.path, shownAs: shown)
    }

    private static func archive(_ path: String) throws(NPYError) -> Archive {
        do {
            return try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw NPYError(path: path, detail: "not a readable .npz (zip) archive")
        }
    }
}
