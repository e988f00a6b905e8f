/// The database password, from `password_file`: never from the command line or the settings file,
/// where `ps` or a shown file would give it away.
///
/// Invariants: the file is refused when its group or others have any permission bit (it must be
/// the daemon user's alone, mode 0600 or 0400), when it is not a regular file, or when it is larger
/// than 1 KiB; the password is its first line, without the line end.

import Glibc
import SplitSystem

public enum DatabasePassword {
    public static func read(_ path: String) throws(DatabaseError) -> String {
        // O_NONBLOCK: a named pipe is refused below instead of blocking open(2) until a writer
        // comes (it changes nothing for a regular file).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { throw DatabaseError("password_file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw DatabaseError("password_file \(path): not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw DatabaseError(
                "password_file \(path) has mode 0\(mode): it must be readable by its owner alone (chmod 600)")
        }
        guard info.st_size <= 1024 else { throw DatabaseError("password_file \(path) is larger than 1 KiB") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        let count = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { throw DatabaseError("password_file \(path): \(String(cString: strerror(errno)))") }
        let line = bytes[..<count].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? []
        let password = String(decoding: line.last == 0x0D ? line.dropLast() : line, as: UTF8.self)
        guard !password.isEmpty else { throw DatabaseError("password_file \(path) is empty") }
        return password
    }
}
