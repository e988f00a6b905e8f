/// DatabasePassword: the password file is the daemon user's alone (0600 or 0400), a regular file
/// reached without a symbolic link, at most 1 KiB; the password is its first line.

import Foundation
import Testing

@testable import SplitDatabase

#if canImport(Glibc)
    import Glibc
#endif

/// A folder of password files, removed when the value goes away.
final class PasswordFolder {
    let path: String

    init() throws {
        path = try #require(makeTemporaryFolder("/tmp/sdbpw"), "mkdtemp failed: errno \(errno)")
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// Writes `bytes` to `name` with exactly `mode` (whatever the umask), and returns its path.
    func file(_ name: String, _ bytes: [UInt8], mode: mode_t) throws -> String {
        let file = "\(path)/\(name)"
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        try #require(chmod(file, mode) == 0, "chmod \(file): errno \(errno)")
        return file
    }

    func file(_ name: String, _ text: String, mode: mode_t) throws -> String {
        try file(name, Array(text.utf8), mode: mode)
    }
}

/// One string handed from a thread to its waiter.
final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private var value = ""

    func set(_ text: String) { lock.withLock { value = text } }
    func get() -> String { lock.withLock { value } }
}

@Suite struct DatabasePasswordTests {
    /// The error `DatabasePassword.read` throws for `path`, or nil when it reads a password.
    static func refusal(_ path: String) -> String? {
        do {
            _ = try DatabasePassword.read(path)
            return nil
        } catch {
            return error.description
        }
    }

    func refusal(_ path: String) -> String? { Self.refusal(path) }

    @Test func theOwnersAloneIsAcceptedAndTheFirstLineIsThePassword() throws {
        let folder = try PasswordFolder()
        #expect(try DatabasePassword.read(folder.file("a", "s3cret\r\nsecond line\n", mode: 0o600)) == "s3cret")
        #expect(try DatabasePassword.read(folder.file("b", "read-only\n", mode: 0o400)) == "read-only")
        // The owner's other bits are the owner's business.
        #expect(try DatabasePassword.read(folder.file("b7", "owner\n", mode: 0o700)) == "owner")
        #expect(try DatabasePassword.read(folder.file("c", "no line end", mode: 0o600)) == "no line end")
        #expect(try DatabasePassword.read(folder.file("d", "cr only\r", mode: 0o600)) == "cr only")
        // Blanks and other characters are the password's own; only the line end goes.
        #expect(try DatabasePassword.read(folder.file("e", " pass word \t\nx", mode: 0o600)) == " pass word \t")
        #expect(try DatabasePassword.read(folder.file("f", "pässwörd🔑\n", mode: 0o600)) == "pässwörd🔑")
        // Exactly 1 KiB is allowed.
        let long = String(repeating: "p", count: 1023) + "\n"
        #expect(try DatabasePassword.read(folder.file("g", long, mode: 0o600)) == String(repeating: "p", count: 1023))
    }

    @Test(arguments: [0o640, 0o604, 0o644, 0o660, 0o606, 0o610, 0o601, 0o777] as [mode_t])
    func anyPermissionForGroupOrOthersIsRefused(mode: mode_t) throws {
        let folder = try PasswordFolder()
        let path = try folder.file("pw", "s3cret\n", mode: mode)
        let text = "0" + String(mode, radix: 8)
        let message = try #require(refusal(path), "mode \(text) was accepted")
        #expect(message.contains(path))
        #expect(message.contains("mode \(text)"), "\(message)")
        #expect(message.contains("chmod 600"), "\(message)")
        // The password never shows in the message.
        #expect(!message.contains("s3cret"))
    }

    @Test func aDirectoryIsRefused() throws {
        let folder = try PasswordFolder()
        let directory = "\(folder.path)/dir"
        try #require(mkdir(directory, 0o700) == 0)
        let message = try #require(refusal(directory))
        #expect(message.contains("not a regular file"), "\(message)")
    }

    /// A named pipe would block `open` until a writer came: the daemon would hang at start.
    @Test func aNamedPipeIsRefusedWithoutWaitingForAWriter() async throws {
        let folder = try PasswordFolder()
        let fifo = "\(folder.path)/fifo"
        try #require(mkfifo(fifo, 0o600) == 0)
        let outcome = try await offThePool { () -> String in
            let done = DispatchSemaphore(value: 0)
            let message = Box()
            Thread {
                message.set(Self.refusal(fifo) ?? "accepted")
                done.signal()
            }.start()
            guard done.wait(timeout: .now() + 5) == .timedOut else { return message.get() }
            // Still in open(2): a writer that comes and goes lets it return.
            let writer = open(fifo, O_WRONLY | O_NONBLOCK)
            if writer >= 0 { close(writer) }
            done.wait()
            return "still waiting for a writer after 5 s"
        }
        #expect(outcome == "password_file \(fifo): not a regular file")
    }

    @Test func aSymbolicLinkIsNotFollowed() throws {
        let folder = try PasswordFolder()
        let target = try folder.file("real", "s3cret\n", mode: 0o600)
        let link = "\(folder.path)/link"
        try #require(symlink(target, link) == 0)
        // The target itself is fine; the link to it is refused (O_NOFOLLOW: ELOOP).
        #expect(try DatabasePassword.read(target) == "s3cret")
        let message = try #require(refusal(link), "a symbolic link was followed")
        #expect(message.contains(link))
        #expect(message.contains(String(cString: strerror(ELOOP))), "\(message)")
        #expect(!message.contains("s3cret"))
    }

    @Test func aMissingFileIsRefusedWithTheSystemsReason() throws {
        let folder = try PasswordFolder()
        let message = try #require(refusal("\(folder.path)/absent"))
        #expect(message == "password_file \(folder.path)/absent: \(String(cString: strerror(ENOENT)))")
    }

    @Test func anEmptyPasswordIsRefused() throws {
        let folder = try PasswordFolder()
        for (name, text) in [("empty", ""), ("newline", "\n"), ("crlf", "\r\n"), ("later", "\nsecond line\n")] {
            let path = try folder.file(name, text, mode: 0o600)
            let message = try #require(refusal(path), "\(name) was accepted")
            #expect(message == "password_file \(path) is empty")
        }
    }

    @Test func moreThanOneKiBIsRefused() throws {
        let folder = try PasswordFolder()
        let path = try folder.file("big", String(repeating: "p", count: 1025), mode: 0o600)
        let message = try #require(refusal(path))
        #expect(message == "password_file \(path) is larger than 1 KiB")
        let huge = try folder.file("huge", "short\n" + String(repeating: "x", count: 100_000), mode: 0o600)
        #expect(refusal(huge) == "password_file \(huge) is larger than 1 KiB")
    }
}
