import Testing
@testable import SessionHost

/// The access line: nginx's combined format, escaped, then the session hash, request id and
/// duration.
struct AccessLogLineTests {
    @Test func combinedFormatWithSessionHashRequestAndDuration() {
        let params = ["REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "GET", "REQUEST_URI": "/shop/?q=\"x\"", "SERVER_PROTOCOL": "HTTP/2.0",
                      "HTTP_USER_AGENT": "curl/7.88.1", "HTTP_REFERER": "http://a/b"]
        let line = "\(AccessLogLine({ params[$0] }, status: 200, bytes: 2188, sessionID: "abcdefghijklmnopqrstuvwx", request: 17, milliseconds: 1.2345, time: 0))"
        #expect(line.wholeMatch(of: #/10\.0\.0\.7 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /shop/\?q=\\x22x\\x22 HTTP/2\.0" 200 2188 "http://a/b" "curl/7\.88\.1" session=[0-9a-f]{16} request=17 duration=1\.23\dms/#) != nil, "\(line)")
        #expect(!line.contains("abcdefghijklmnopqrstuvwx"))
        // The same ID always gives the same hash (lines of one session can be found).
        #expect(AccessLogLine.hash("abcdefghijklmnopqrstuvwx") == AccessLogLine.hash("abcdefghijklmnopqrstuvwx"))
        #expect(AccessLogLine.hash("abcdefghijklmnopqrstuvwx") != AccessLogLine.hash("abcdefghijklmnopqrstuvwy"))
    }

    @Test func missingFieldsAreDashes() {
        let line = "\(AccessLogLine({ _ in nil }, status: 404, bytes: 10, sessionID: nil, request: 1, milliseconds: 0, time: 0))"
        #expect(line.hasPrefix("- - - ["))
        #expect(line.contains("\"- - HTTP/1.1\" 404 10 \"-\" \"-\" session=- request=1 duration=0.000ms"), "\(line)")
        #expect(AccessLogLine.escaped("a\u{1}b\\ü") == "a\\x01b\\x5C\\xC3\\xBC")
    }
}
