/// `--version` and the package version agree: debian/changelog's top entry is the source of truth.

import Foundation
import SplitSystem
import Testing

@Suite struct VersionTests {
    @Test func versionIsThePackageVersion() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let changelog = try String(contentsOf: repository.appendingPathComponent("debian/changelog"), encoding: .utf8)
        // "splitmilter (0.3.0) unstable; urgency=medium"
        let first = try #require(changelog.split(separator: "\n").first)
        let version = try #require(first.split(separator: "(").dropFirst().first?.split(separator: ")").first)
        #expect(
            String(version) == SplitmilterVersion.string, "bump Sources/SplitSystem/Version.swift with debian/changelog"
        )
    }
}
