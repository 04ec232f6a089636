import FastCGI
import HTTPTypes
@testable import SessionHost
import Testing

struct RequestTests {
    func request(_ pairs: [(String, String)], body: [UInt8] = []) throws -> Request {
        try Request(FastCGIRequest(params: FastCGIParams(pairs.map { (name: $0.0, value: $0.1) }), body: body))
    }

    @Test func readsNginxParameters() throws {
        let request = try request([
            ("REQUEST_METHOD", "POST"), ("REQUEST_URI", "/a/./b/../c?x=1&y=%20"), ("QUERY_STRING", "x=1&y=%20"),
            ("HTTPS", "on"), ("SERVER_NAME", "example.org"), ("SERVER_PORT", "443"), ("REMOTE_ADDR", "10.1.2.3"),
            ("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "2"), ("HTTP_CONTENT_TYPE", "text/plain"),
            ("HTTP_X_FORWARDED_FOR", "1.2.3.4"), ("HTTP_COOKIE", "s=1"),
        ], body: [104, 105])
        #expect(request.method == "POST")
        #expect(request.path == "/a/c")
        #expect(request.query("y") == " ")
        #expect(request.isSecure)
        #expect(request.serverPort == 443)
        #expect(request.header("X-Forwarded-For") == "1.2.3.4")
        #expect(request.header("content-type") == "text/plain")
        #expect(request.headers[values: .contentType] == ["text/plain"])
        #expect(request.headers[.contentLength] == "2")
        #expect(request.cookies == ["s": "1"])
        #expect(request.bodyText == "hi")
    }

    @Test func apacheStyleContentHeadersAreFound() throws {
        let request = try request([("REQUEST_URI", "/"), ("CONTENT_TYPE", "application/json")])
        #expect(request.header("Content-Type") == "application/json")
        #expect(request.headers[.contentType] == "application/json")
        #expect(!request.isSecure)
    }

    @Test func pathEscapingTheRootIsAnError() {
        #expect(throws: RequestError.malformedPath("/../x")) { try request([("REQUEST_URI", "/../x")]) }
    }

    @Test(arguments: [
        "a=1; b=\"quoted\"; a=second; bad name=x; c=; =d; e=spa ce",
        "ASP.NET_SessionId=abc; ASPSESSIONIDABCDEFGH=XYZ;x=1 ;  y = 2 ",
        "a", "", ";;;", "a=1;a=2", "z=\"\"", "sp ace=1; ok=2",
    ])
    func singleCookieLookupAgreesWithTheParsedHeader(header: String) throws {
        let request = try request([("REQUEST_URI", "/"), ("HTTP_COOKIE", header)])
        let names = Set(request.cookies.keys).union(["a", "b", "c", "e", "x", "y", "z", "ok", "missing", "ASP.NET_SessionId"])
        for name in names {
            #expect(request.cookie(named: name) == request.cookies[name], "cookie \(name) in \(header)")
        }
    }
}
