/// `--database FILE` of `check` and `explain`: the rows of the rule file's `pgsql:` lists, read as
/// `splitmilter --check --database FILE` reads them (`DatabaseOpening`): from the database, or from
/// its cache when it cannot be reached, said on standard error.

import ArgumentParser
import Logging
import SplitDatabase
import SplitSystem

enum DatabaseOption {
    static let help = ArgumentHelp(
        "PostgreSQL settings (splitmilter's --database file) for the rule file's pgsql: lists: their rows are read from the database, or from its cache when it cannot be reached (said on standard error).",
        valueName: "file")

    /// The inputs to parse the rules with; exit 1 (said on standard error) when `path` gives no rows.
    static func inputs(_ path: String?) throws -> RuleInputs {
        let logger = Logger(label: "milter-test") { LineLogHandler(label: $0, destination: .standardError) }
        guard let inputs = RuleInputs.checking(database: path, logger: logger) else { throw ExitCode.failure }
        return inputs
    }
}
