import Foundation

/// `clients` threads each sending `requests` GETs of `/echo` through the front end at `port`,
/// each on a kept-alive connection (a new one every `reconnectEvery` requests); returns what went
/// wrong (a status other than 200, a wrong body, a connection error).
func concurrentClients(port: Int, clients: Int, requests: Int, reconnectEvery: Int = .max) -> [String] {
    let failures = Failures()
    let done = DispatchGroup()
    for client in 0..<clients {
        done.enter()
        Thread.detachNewThread {
            defer { done.leave() }
            do {
                var connection = try HTTPConnection(port: port)
                for index in 0..<requests {
                    if index > 0, index % reconnectEvery == 0 { connection = try HTTPConnection(port: port) }
                    let reply = try connection.send("GET", "/echo?client=\(client)&n=\(index)")
                    if reply.status != 200 || !reply.text.contains("query: client=\(client)&n=\(index)") {
                        failures.add("client \(client) request \(index): \(reply.status)")
                    }
                }
            } catch {
                failures.add("client \(client): \(error)")
            }
        }
    }
    done.wait()
    return failures.all
}

/// Failures collected from several threads.
final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []

    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}
