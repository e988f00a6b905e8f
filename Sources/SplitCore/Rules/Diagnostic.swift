/// Diagnostics for rule files: what was wrong, where, and how bad.
///
/// The parser collects every finding instead of stopping at the first, so an administrator sees all
/// problems of a rule file in one run. The printed form is `file:line:col: error: message`, the form
/// editors and CI parsers understand.

/// A position in a rule file or an included list file. Lines and columns count from 1.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int

    public init(file: String, line: Int, column: Int = 1) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    /// The `file:line` form used in logs to name the rule that fired.
    public var fileAndLine: String { "\(file):\(line)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }

    /// The line, the column and the path's length, not its bytes: in one rule set no two sections
    /// share a line of a file, so tables of sections by location tell them apart without reading
    /// paths. Equal locations hash equally (equality still compares the paths, at once when they share
    /// their storage, as the locations of one rule set do).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(line)
        hasher.combine(column)
        hasher.combine(file.utf8.count)
    }
}

public struct Diagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable {
        case error
        case warning
    }

    public let severity: Severity
    public let location: SourceLocation
    public let message: String

    public static func error(_ message: String, at location: SourceLocation) -> Diagnostic {
        Diagnostic(severity: .error, location: location, message: message)
    }

    public static func warning(_ message: String, at location: SourceLocation) -> Diagnostic {
        Diagnostic(severity: .warning, location: location, message: message)
    }

    public var description: String { "\(location): \(severity.rawValue): \(message)" }
}
