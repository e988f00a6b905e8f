/// The version both executables print with `--version`.
///
/// The package version in `debian/changelog` is the source of truth; this constant must equal its
/// top entry (`VersionTests` fails otherwise, and `debian/rules` checks the built binary).

public enum SplitmilterVersion {
    public static let string = "0.3.0"
}
