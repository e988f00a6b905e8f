/// DatabaseSettings: the `--database` file's keys, defaults and errors at their places.

import SplitCore
import Testing

@testable import SplitDatabase

@Suite struct DatabaseSettingsTests {
    func parse(_ text: String) -> Result<DatabaseSettings, DatabaseSettingsErrors> {
        DatabaseSettings.parse(Array(text.utf8), path: "/etc/sm/db.conf")
    }

    @Test func readsEveryKey() throws {
        let settings = try parse(
            """
            # the fleet's database
            host = db.example.org
            port=6432
            dbname = rules   # comment
            user = reader
            password_file = /etc/sm/pw
            sslmode = verify-ca
            sslrootcert = /etc/sm/ca.pem
            connect_timeout = 3
            cache = /var/lib/sm/db.cache
            """
        ).get()
        #expect(settings.host == "db.example.org")
        #expect(settings.port == 6432)
        #expect(settings.dbname == "rules")
        #expect(settings.user == "reader")
        #expect(settings.passwordFile == "/etc/sm/pw")
        #expect(settings.effectiveSSLMode == "verify-ca")
        #expect(settings.connectTimeout == 3)
        #expect(settings.cache == "/var/lib/sm/db.cache")
        let parameters = Dictionary(uniqueKeysWithValues: settings.connectionParameters(password: "s3cret"))
        #expect(parameters["sslrootcert"] == "/etc/sm/ca.pem")
        #expect(parameters["password"] == "s3cret")
        #expect(!settings.description.contains("s3cret"))
    }

    @Test func aHostElsewhereIsVerifiedUnlessTheFileSaysOtherwise() throws {
        let remote = try parse("host = 192.0.2.7\npassword_file = /p\n").get()
        #expect(remote.effectiveSSLMode == "verify-full")
        let parameters = Dictionary(uniqueKeysWithValues: remote.connectionParameters(password: nil))
        #expect(parameters["sslrootcert"] == "/etc/ssl/certs/ca-certificates.crt")
        #expect(parameters["password"] == nil)
        #expect(try parse("host = 127.0.0.1\npassword_file = /p\n").get().effectiveSSLMode == "prefer")
        #expect(try parse("host = /run/postgresql\n").get().effectiveSSLMode == "prefer")
        #expect(
            try parse("host = 192.0.2.7\nsslmode = disable\npassword_file = /p\n").get().effectiveSSLMode == "disable")
    }

    /// Only hosts that are this machine get `prefer`: a name that merely starts like a loopback
    /// address, and a libpq host list with one host elsewhere, are verified.
    @Test func onlyThisMachineIsLocal() throws {
        func mode(_ host: String) throws -> String {
            try parse("host = \(host)\npassword_file = /p\n").get().effectiveSSLMode
        }
        for local in ["localhost", "::1", "127.0.0.1", "127.1.2.254", "/run/postgresql", "localhost,127.0.0.1"] {
            #expect(try mode(local) == "prefer", "\(local)")
        }
        for elsewhere in [
            "127.db.example.org", "127.0.0.1.example.net", "127.0.0.256", "127.0.0", "127.0.0.1,db.example.org",
            "/run/postgresql,db.example.org", "localhost.example.org", "2130706433",
        ] {
            #expect(try mode(elsewhere) == "verify-full", "\(elsewhere)")
        }
    }

    @Test func errorsAtTheirPlaces() {
        guard
            case .failure(let errors) = parse(
                """
                host = a
                password = x
                port = 70000
                sslmode = sometimes
                host = b
                cache = relative/path
                just words
                sslrootcert = ca.pem
                sslcert = certs/client.crt
                sslkey = ./client.key
                """)
        else {
            Issue.record("expected errors")
            return
        }
        let lines = errors.diagnostics.filter { $0.severity == .error }.map(\.description)
        #expect(
            lines == [
                "/etc/sm/db.conf:2:1: error: unknown key 'password'; expected one of: host, port, dbname, user, password_file, sslmode, sslrootcert, sslcert, sslkey, connect_timeout, cache",
                "/etc/sm/db.conf:3:7: error: 'port' takes 1 to 65535",
                "/etc/sm/db.conf:4:10: error: 'sslmode' takes one of: disable, allow, prefer, require, verify-ca, verify-full",
                "/etc/sm/db.conf:5:1: error: duplicate 'host'; first at line 1",
                "/etc/sm/db.conf:6:8: error: 'cache' takes an absolute path",
                "/etc/sm/db.conf:7:1: error: expected 'key = value'",
                "/etc/sm/db.conf:8:14: error: 'sslrootcert' takes an absolute path",
                "/etc/sm/db.conf:9:10: error: 'sslcert' takes an absolute path",
                "/etc/sm/db.conf:10:9: error: 'sslkey' takes an absolute path",
            ])
    }
}
