/// Writing a small file so that readers see either the old or the new content, never a part.

import Glibc
import SystemCall

public enum AtomicFile {
    public static func write(_ text: String, to path: String) throws {
        try write(Array(text.utf8), to: path, mode: 0o644)
    }

    /// `mode` applies to a new file (the umask still narrows it); 0o600 for a file only its owner
    /// may read.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileError(description: "\(temporary): \(String(cString: strerror(errno)))") }
        // A temporary file left by a crash keeps its old mode through O_TRUNC: set it again.
        _ = fchmod(fd, mode)
        var bytes = bytes
        var written = 0
        let ok = bytes.withUnsafeMutableBytes { buffer -> Bool in
            while written < buffer.count {
                let n = SystemCallError.retrying {
                    Glibc.write(fd, buffer.baseAddress.map { $0 + written }, buffer.count - written)
                }
                if n < 0 { return false }
                written += n
            }
            return fsync(fd) == 0
        }
        let reason = String(cString: strerror(errno))
        close(fd)
        guard ok, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw FileError(description: "\(path): \(reason)")
        }
    }
}
