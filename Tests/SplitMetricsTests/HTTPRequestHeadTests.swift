/// The metrics listener's reading of a request: where the head ends (CRLF or bare LF lines, found
/// again when the head arrives byte by byte), the request line's three parts and what each kind of
/// line is answered with.

import SplitCore
import Testing

@testable import SplitMetrics

struct HTTPRequestHeadTests {
    func parse(_ text: String) -> HTTPRequestHead { HTTPRequestHead.parse(Array(text.utf8)) }

    @Test func theServedRequests() {
        #expect(parse("GET /metrics HTTP/1.1") == .path("/metrics", .get))
        #expect(parse("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n") == .path("/metrics", .get))
        #expect(parse("HEAD /ready HTTP/1.1\r\n\r\n") == .path("/ready", .head))
        #expect(parse("GET /health HTTP/1.1\n\n") == .path("/health", .get))
        // The query is not part of the path; nothing is decoded.
        #expect(parse("GET /metrics?name[]=x HTTP/1.1\r\n") == .path("/metrics", .get))
        #expect(parse("GET /%6detrics HTTP/1.1\r\n") == .path("/%6detrics", .get))
        #expect(parse("GET / HTTP/1.1\r\n") == .path("/", .get))
        // Headers are never read: not even a malformed one matters.
        #expect(parse("GET /metrics HTTP/1.1\r\n\u{1}garbage\r\n\r\n") == .path("/metrics", .get))
    }

    @Test func otherMethodsAreNotAllowed() {
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "Head", "X-CUSTOM!"] {
            #expect(parse("\(method) /metrics HTTP/1.1\r\n\r\n") == .badMethod, "\(method)")
        }
    }

    @Test func malformedLines() {
        for line in [
            "", "\r\n\r\n", "GET", "GET /metrics", "GET /metrics HTTP/1.1 extra", "GET  /metrics HTTP/1.1",
            "GET /metrics  HTTP/1.1", " GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1 ", "GET\t/metrics HTTP/1.1",
            "GET /metrics HTTP/2.0", "GET /metrics HTTP/1.10", "GET /metrics HTTP/1.x", "GET /metrics http/1.1",
            "GET metrics HTTP/1.1", "GET http://127.0.0.1/metrics HTTP/1.1", "GET * HTTP/1.1",
            "GET /m\u{7F} HTTP/1.1", "GET /mé HTTP/1.1", "G(T /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r\r\n",
        ] {
            #expect(parse(line) == .malformed, "\(line.debugDescription)")
        }
        // A well-formed line with another method is a 405, even for a target that is no path.
        #expect(parse("OPTIONS * HTTP/1.1") == .badMethod)
        #expect(parse("CONNECT 127.0.0.1:9124 HTTP/1.1") == .badMethod)
    }

    @Test func theEndOfTheHead() {
        func end(_ text: String) -> Int? { HTTPRequestHead.end(of: Array(text.utf8)) }
        #expect(end("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody") == 27)
        #expect(end("GET / HTTP/1.1\n\n") == 16)
        #expect(end("GET / HTTP/1.1\r\n\n") == 17)
        #expect(end("GET / HTTP/1.1\n\r\n") == 17)
        #expect(end("GET / HTTP/1.1\r\nHost: x\r\n") == nil)
        #expect(end("GET / HTTP/1.1\r\n\r") == nil)
        #expect(end("GET / HTTP/1.1\r\r\n") == nil)
        #expect(end("") == nil)
    }

    /// Read a byte at a time, resuming 2 bytes before the previous count as the listener does, the
    /// head ends where it ends read whole.
    @Test func theEndFoundByteByByte() {
        for text in [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", "GET / HTTP/1.1\n\nrest", "GET / HTTP/1.1\r\n\nrest",
            "GET / HTTP/1.1\n\r\nrest", "GET / HTTP/1.1\r\nA: b\r\n",
        ] {
            let bytes = Array(text.utf8)
            var head: [UInt8] = []
            var searched = 0
            var found: Int? = nil
            for byte in bytes where found == nil {
                head.append(byte)
                found = HTTPRequestHead.end(of: head, from: searched)
                searched = max(0, head.count - 2)
            }
            #expect(found == HTTPRequestHead.end(of: bytes), "\(text.debugDescription)")
        }
    }

    @Test func theAnswers() {
        let metrics = DaemonMetrics()
        func answer(_ request: HTTPRequestHead) -> String {
            String(decoding: MetricsListener.answer(to: request, metrics: metrics), as: UTF8.self)
        }
        #expect(
            answer(.path("/health", .get))
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        )
        #expect(
            answer(.path("/health", .head))
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        )
        #expect(answer(.path("/ready", .get)).hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
        #expect(answer(.path("/ready", .get)).hasSuffix("\r\n\r\nno rules loaded\n"))
        #expect(answer(.path("/nope", .get)).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(answer(.path("/metrics/", .get)).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(answer(.badMethod).hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(answer(.badMethod).contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(answer(.malformed).hasPrefix("HTTP/1.1 400 Bad Request\r\n"))

        let page = metrics.page()
        let full = MetricsListener.answer(to: .path("/metrics", .get), metrics: metrics)
        let head = MetricsListener.answer(to: .path("/metrics", .head), metrics: metrics)
        #expect(Array(full.suffix(page.count)) == page)
        #expect(full.count == head.count + page.count)
        let text = String(decoding: head, as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(text.contains("\r\nContent-Length: \(page.count)\r\n"))
        #expect(text.hasSuffix("\r\nConnection: close\r\n\r\n"))
    }
}
