/// The SessionHost release.
public enum SessionHostVersion {
    public static let current = "0.1.0"
}
