// swift-tools-version:6.0
// splitmilter: a Postfix milter that makes Postfix copy and route mail per recipient.
import PackageDescription

let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

let package = Package(
    name: "splitmilter",
    products: [
        .executable(name: "splitmilter", targets: ["splitmilter"]),
        .executable(name: "milter-test", targets: ["milter-test"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The metrics page's registry (its HTTP listener is our own: SplitMetrics, no Foundation).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // The C module over Debian's libmilter: only what Swift cannot call directly.
        .target(
            name: "CMilterShim",
            path: "CMilterShim",
            linkerSettings: [.linkedLibrary("milter")]
        ),
        // The C module over glibc's libresolv, for the DNS lookups of `spf:` sources.
        .target(name: "CResolvShim", linkerSettings: [.linkedLibrary("resolv")]),
        // The C module over OpenSSL's libcrypto, for the SHA-256 of the rule files as read.
        .target(name: "CCryptoShim", linkerSettings: [.linkedLibrary("crypto")]),
        // The C module over Debian's libpq, for the rows of `--database` (PostgreSQL).
        .target(name: "CPostgresShim", linkerSettings: [.linkedLibrary("pq")]),
        // PURE: rule file language, per-recipient decisions, per-message plan. No I/O.
        .target(name: "SplitCore"),
        // The one lock of both executables (a pthread mutex, which ThreadSanitizer sees).
        .target(name: "SplitLock"),
        // The one edge for failing system calls (EINTR retried, errno typed), daemon and client alike.
        .target(name: "SystemCall"),
        // The operating-system side shared by both executables: rule files on disk, sockets, logging.
        .target(name: "SplitSystem", dependencies: ["SplitCore", "SystemCall", "CResolvShim", "CCryptoShim", logging]),
        // SHELL: the daemon's Prometheus metrics and their HTTP listener (/metrics, /ready, /health).
        .target(
            name: "SplitMetrics", dependencies: ["SplitCore", "SplitSystem", "SplitLock", "SystemCall", prometheus, logging]),
        // SHELL: rules from PostgreSQL: the connection, the follower thread, the local cache.
        .target(name: "SplitDatabase", dependencies: ["SplitCore", "SplitSystem", "CPostgresShim", logging]),
        // SHELL: the only code that touches libmilter.
        .target(
            name: "SplitDaemon",
            dependencies: [
                "CMilterShim", "SplitCore", "SplitSystem", "SplitLock", "SplitMetrics", "SplitDatabase", "MilterProtocol",
                "SystemCall", logging,
            ]),
        // PURE: the milter wire protocol (version 6) as frames and typed messages. No sockets.
        .target(name: "MilterProtocol"),
        // SHELL: the MTA side of a milter session over unix/inet sockets, built on MilterProtocol.
        .target(name: "MilterClient", dependencies: ["MilterProtocol", "SplitLock", "SystemCall"]),
        .executableTarget(
            name: "splitmilter",
            dependencies: [
                "SplitDaemon", "SplitSystem", "SplitMetrics", "SplitDatabase", "MilterProtocol", argumentParser,
            ]),
        .executableTarget(
            name: "milter-test",
            dependencies: [
                "SplitCore", "SplitSystem", "SplitLock", "SplitDatabase", "MilterProtocol", "MilterClient", argumentParser,
                logging,
            ]
        ),
        .testTarget(name: "SplitCoreTests", dependencies: ["SplitCore"]),
        .testTarget(name: "SplitSystemTests", dependencies: ["SplitSystem", "SplitCore"]),
        .testTarget(name: "SplitLockTests", dependencies: ["SplitLock"]),
        .testTarget(name: "MilterProtocolTests", dependencies: ["MilterProtocol"]),
        .testTarget(name: "SplitMetricsTests", dependencies: ["SplitMetrics", "SplitCore"]),
        .testTarget(name: "SplitDatabaseTests", dependencies: ["SplitDatabase", "SplitCore", logging]),
        // The built milter-test and splitmilter as an administrator runs them: golden explain cases,
        // send against the daemon and opendkim, bench, the README's examples.
        .testTarget(name: "MilterTestTests", dependencies: ["MilterProtocol", "MilterClient"]),
    ]
)
