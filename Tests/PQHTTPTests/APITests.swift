import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import PQCore
import Prometheus
import ServiceLifecycle
import Testing

@testable import PQHTTP

/// The routes of DESIGN.md section 11, in process (HummingbirdTesting's router client) on a
/// memory store that a "host" has published two jobs to.
@Suite struct APITests {
    static let logger = Logger(label: "pq-http-test")

    static func makeStore() async throws -> MemoryTaskStore {
        let store = MemoryTaskStore()
        try await store.publishJobs(
            host: "test-host",
            jobs: [
                JobInfo(
                    name: "echo", plugin: "demo", pluginVersion: "1.2.3", doc: "returns its kwargs",
                    options: #"{"queue":"mail","max_retries":2}"#),
                JobInfo(name: "add", plugin: "demo", pluginVersion: "1.2.3", signature: "(a:i64,b:i64)->i64"),
                JobInfo(
                    name: "tick", plugin: "demo", pluginVersion: "1.2.3", periodic: true, options: #"{"run_every":60}"#),
            ])
        return store
    }

    static func app(_ store: any TaskStore, token: String? = nil) throws -> some ApplicationProtocol {
        let options = try HTTPOptions(address: "127.0.0.1:0", token: token)
        let server = HTTPServer(store: store, options: options, registry: nil, logger: logger)
        return Application(router: server.makeRouter(), logger: logger)
    }

    static func json(_ buffer: ByteBuffer) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(buffer.readableBytesView), options: [.fragmentsAllowed])
    }

    static func error(_ response: TestResponse) throws -> String {
        let object = try #require(try json(response.body) as? [String: Any])
        #expect(response.headers[.contentType] == "application/json")
        return try #require(object["error"] as? String)
    }

    static let jsonHeaders: HTTPFields = [.contentType: "application/json"]

    @Test func healthzDashboardAndJobs() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store).test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
                #expect(response.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
                let page = String(buffer: response.body)
                #expect(page.contains("<!doctype html>") || page.contains("<!DOCTYPE html>"))
                // Nothing is loaded from elsewhere: the only address is the SVG namespace.
                #expect(!page.contains("https://"))
                #expect(
                    page.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http://") == false)
                #expect(
                    !page.contains("innerHTML") && !page.contains("insertAdjacentHTML")
                        && !page.contains("document.write"))
            }
            try await client.execute(uri: "/api/jobs", method: .get) { response in
                #expect(response.status == .ok)
                let jobs = try #require(try Self.json(response.body) as? [[String: Any]])
                #expect(Set(jobs.compactMap { $0["name"] as? String }) == ["echo", "add", "tick"])
                let add = try #require(jobs.first { $0["name"] as? String == "add" })
                #expect(add["signature"] as? String == "(a:i64,b:i64)->i64")
                #expect(add["plugin_version"] as? String == "1.2.3")
                let tick = try #require(jobs.first { $0["name"] as? String == "tick" })
                #expect(tick["type"] as? String == "periodic")
                #expect(tick["schedule"] as? String != nil)
            }
            try await client.execute(uri: "/api/schedule", method: .get) { response in
                let rows = try #require(try Self.json(response.body) as? [[String: Any]])
                #expect(rows.count == 1)
                #expect(rows.first?["name"] as? String == "tick")
                #expect((rows.first?["in_seconds"] as? Double).map { $0 > 0 && $0 <= 60 } == true)
            }
        }
    }

    @Test func queueReadAndRevokeATask() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store).test(.router) { client in
            let body = #"{"job":"echo","kwargs":{"to":"<b>x</b>"},"delay":3600,"timeout":5}"#
            let id = try await client.execute(
                uri: "/api/tasks", method: .post, headers: Self.jsonHeaders, body: ByteBuffer(string: body)
            ) { response -> String in
                #expect(response.status == .created)
                let task = try #require(try Self.json(response.body) as? [String: Any])
                #expect(task["name"] as? String == "echo")
                #expect(task["queue"] as? String == "mail")  // the job's queue
                #expect(task["max_retries"] as? Int == 2)  // the job's options
                #expect(task["plugin"] as? String == "demo")
                #expect(task["timeout"] as? Double == 5)
                #expect((task["kwargs"] as? [String: Any])?["to"] as? String == "<b>x</b>")
                let id = try #require(task["id"] as? String)
                #expect(response.headers[.location] == "/api/tasks/" + id)
                return id
            }
            try await client.execute(uri: "/api/tasks/" + id, method: .get) { response in
                #expect(response.status == .ok)
                let task = try #require(try Self.json(response.body) as? [String: Any])
                #expect(task["status_string"] as? String == "QUEUED")
            }
            try await client.execute(uri: "/api/tasks?status=QUEUED&queue=mail&job=echo", method: .get) { response in
                let tasks = try #require(try Self.json(response.body) as? [[String: Any]])
                #expect(tasks.map { $0["id"] as? String } == [id])
            }
            try await client.execute(uri: "/api/tasks?queue=default", method: .get) { response in
                let tasks = try #require(try Self.json(response.body) as? [[String: Any]])
                #expect(tasks.isEmpty)
            }
            try await client.execute(uri: "/api/queues", method: .get) { response in
                let queues = try #require(try Self.json(response.body) as? [[String: Any]])
                #expect(queues.first { $0["queue"] as? String == "mail" }?["delayed"] as? Int == 1)
            }
            try await client.execute(
                uri: "/api/tasks/\(id)/revoke", method: .post, headers: Self.jsonHeaders, body: ByteBuffer(string: "{}")
            ) {
                response in
                #expect(response.status == .ok)
                let answer = try #require(try Self.json(response.body) as? [String: Any])
                #expect(answer["outcome"] as? String == "revoked")
            }
            try await client.execute(
                uri: "/api/tasks/\(id)/revoke", method: .post, headers: Self.jsonHeaders, body: ByteBuffer(string: "{}")
            ) {
                response in
                #expect(response.status == .conflict)
                let message = try Self.error(response)
                #expect(message.contains("already finished (REVOKED)"), "\(message)")
            }
            #expect(try await store.task(id: id)?.status == .revoked)
        }
    }

    @Test func badInputIsRefusedAndQueuesNothing() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store).test(.router) { client in
            let cases: [(String, HTTPResponse.Status, String)] = [
                (#"{"job":"nope"}"#, .badRequest, "unknown job 'nope'"),
                (#"{"job":"echo","kwargs":[1,2]}"#, .badRequest, "'kwargs' must be a JSON object"),
                (#"{"job":"echo","kwargs":"{}"}"#, .badRequest, "'kwargs' must be a JSON object"),
                (#"{"job":"echo""#, .badRequest, "not valid JSON"),
                ("[1]", .badRequest, "must be a JSON object"),
                (#"{"kwargs":{}}"#, .badRequest, "'job' must be"),
                (#"{"job":"echo","delay":-1}"#, .badRequest, "'delay' must be"),
                (#"{"job":"echo","timeout":0}"#, .badRequest, "'timeout' must be"),
                (#"{"job":"echo","queue":""}"#, .badRequest, "'queue' must be"),
                (#"{"job":"echo","priority":3}"#, .badRequest, "unknown field 'priority'"),
                (#"{"job":"add","kwargs":{"a":1}}"#, .badRequest, "job 'add'"),
            ]
            for (body, status, fragment) in cases {
                try await client.execute(
                    uri: "/api/tasks", method: .post, headers: Self.jsonHeaders, body: ByteBuffer(string: body)
                ) { response in
                    #expect(response.status == status, "\(body)")
                    let message = try Self.error(response)
                    #expect(message.contains(fragment), "\(body): \(message)")
                    #expect(message.contains("nothing was queued"), "\(message)")
                }
            }
            let big = #"{"job":"echo","kwargs":{"x":""# + String(repeating: "a", count: (1 << 20) + 10) + #""}}"#
            try await client.execute(
                uri: "/api/tasks", method: .post, headers: Self.jsonHeaders, body: ByteBuffer(string: big)
            ) { response in
                #expect(response.status == .contentTooLarge)
                let message = try Self.error(response)
                #expect(message.contains("over the limit"), "\(message)")
            }
            try await client.execute(uri: "/api/tasks/0123456789abcdef0123456789abcdef", method: .get) { response in
                #expect(response.status == .notFound)
                let message = try Self.error(response)
                #expect(message.contains("no task with id"), "\(message)")
            }
            try await client.execute(
                uri: "/api/tasks/0123456789abcdef0123456789abcdef/revoke", method: .post, headers: Self.jsonHeaders,
                body: ByteBuffer(string: "{}")
            ) { response in
                #expect(response.status == .notFound)
            }
            try await client.execute(uri: "/api/jobs", method: .delete) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET")
                let message = try Self.error(response)
                #expect(message.contains("DELETE is not allowed"), "\(message)")
            }
            try await client.execute(uri: "/api/tasks/abc", method: .put) { response in
                #expect(response.status == .methodNotAllowed)
            }
            try await client.execute(uri: "/api/tasks", method: .head) { response in
                #expect(response.status == .methodNotAllowed)
            }
            try await client.execute(uri: "/api/nothing", method: .get) { response in
                #expect(response.status == .notFound)
                let message = try Self.error(response)
                #expect(message.contains("no route"), "\(message)")
            }
            try await client.execute(uri: "/api/tasks?status=DONE", method: .get) { response in
                #expect(response.status == .badRequest)
            }
            try await client.execute(uri: "/api/tasks?limit=0", method: .get) { response in
                #expect(response.status == .badRequest)
            }
        }
        #expect(try await store.tasks(status: nil, job: nil, limit: 10).isEmpty)
    }

    @Test func tokenGuardsEveryRouteButHealthz() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store, token: "s3cret").test(.router) { client in
            for uri in [
                "/api/jobs", "/api/tasks", "/api/queues", "/api/hosts", "/api/schedule", "/api/events", "/metrics",
            ] {
                try await client.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .unauthorized, "\(uri)")
                    #expect(response.headers[.wwwAuthenticate] == "Bearer")
                }
                try await client.execute(uri: uri, method: .get, headers: [.authorization: "Bearer wrong"]) {
                    response in
                    #expect(response.status == .unauthorized, "\(uri)")
                }
            }
            // The page answers 401 too, with itself as the body: it holds no data and asks for the token.
            try await client.execute(uri: "/", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(String(buffer: response.body).contains("token"))
            }
            try await client.execute(uri: "/healthz", method: .get) { response in #expect(response.status == .ok) }
            try await client.execute(
                uri: "/api/tasks", method: .post, headers: Self.jsonHeaders,
                body: ByteBuffer(string: #"{"job":"echo"}"#)
            ) {
                response in
                #expect(response.status == .unauthorized)
            }
            var headers = Self.jsonHeaders
            headers[.authorization] = "Bearer s3cret"
            try await client.execute(uri: "/api/queues", method: .get, headers: headers) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(
                uri: "/api/tasks", method: .post, headers: headers, body: ByteBuffer(string: #"{"job":"echo"}"#)
            ) { response in
                #expect(response.status == .created)
            }
        }
        #expect(try await store.tasks(status: nil, job: nil, limit: 10).count == 1)
    }

    @Test func requestsAnotherSiteCouldForgeChangeNothing() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store).test(.router) { client in
            let body = ByteBuffer(string: #"{"job":"echo"}"#)
            // A form or a no-cors fetch from another page: the browser names the page's origin.
            try await client.execute(
                uri: "/api/tasks", method: .post,
                headers: [.contentType: "text/plain", .origin: "http://evil.example"], body: body
            ) { response in
                #expect(response.status == .forbidden)
            }
            try await client.execute(
                uri: "/api/tasks/0123456789abcdef0123456789abcdef/revoke", method: .post,
                headers: [
                    .contentType: "application/x-www-form-urlencoded", HTTPField.Name("Sec-Fetch-Site")!: "cross-site",
                ]
            ) { response in
                #expect(response.status == .forbidden)
            }
            var fromElsewhere = Self.jsonHeaders
            fromElsewhere[.origin] = "http://evil.example"
            try await client.execute(uri: "/api/tasks", method: .post, headers: fromElsewhere, body: body) { response in
                #expect(response.status == .forbidden)
            }
            var crossSite = Self.jsonHeaders
            crossSite[HTTPField.Name("Sec-Fetch-Site")!] = "cross-site"
            try await client.execute(uri: "/api/tasks", method: .post, headers: crossSite, body: body) { response in
                #expect(response.status == .forbidden)
            }
            // No CORS grant, ever.
            try await client.execute(uri: "/api/tasks", method: .options, headers: [.origin: "http://evil.example"]) {
                response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[HTTPField.Name("Access-Control-Allow-Origin")!] == nil)
            }
            // Another port of this machine is another origin (and "same-site" to a browser).
            var otherPort = Self.jsonHeaders
            otherPort[.origin] = "http://localhost:8080"
            try await client.execute(uri: "/api/tasks", method: .post, headers: otherPort, body: body) { response in
                #expect(response.status == .forbidden)
            }
            for site in ["same-site", "cross-site"] {
                try await client.execute(
                    uri: "/api/tasks", method: .get, headers: [HTTPField.Name("Sec-Fetch-Site")!: site]
                ) { response in
                    #expect(response.status == .forbidden, "\(site)")
                }
            }
            // Navigating to the dashboard from a link elsewhere is fine; its data is fetched same-origin.
            try await client.execute(
                uri: "/", method: .get,
                headers: [
                    HTTPField.Name("Sec-Fetch-Site")!: "cross-site", HTTPField.Name("Sec-Fetch-Mode")!: "navigate",
                ]
            ) { response in
                #expect(response.status == .ok)
            }
            var sameOrigin = Self.jsonHeaders
            sameOrigin[.origin] = "http://localhost"
            try await client.execute(uri: "/api/tasks", method: .post, headers: sameOrigin, body: body) { response in
                #expect(response.status == .created)
            }
        }
        #expect(try await store.tasks(status: nil, job: nil, limit: 10).count == 1)
    }

    /// Clients that are not browsers send no Origin: `curl -d` (form content type) and a revoke
    /// without a body work.
    @Test func plainClientsNeedNoJSONContentType() async throws {
        let store = try await Self.makeStore()
        try await Self.app(store).test(.router) { client in
            let id = try await client.execute(
                uri: "/api/tasks", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                body: ByteBuffer(string: #"{"job":"echo","delay":60}"#)
            ) { response -> String in
                #expect(response.status == .created)
                return try #require((try Self.json(response.body) as? [String: Any])?["id"] as? String)
            }
            try await client.execute(uri: "/api/tasks/\(id)/revoke", method: .post) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func metricsAreValidPrometheusText() async throws {
        let store = try await Self.makeStore()
        _ = try await store.enqueue([NewTask(name: "echo", queue: "mail"), NewTask(name: "echo", delay: 60)])
        try await Self.app(store).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                let samples = try PrometheusText.parse(String(buffer: response.body))
                #expect(samples[#"pq_queue_tasks{queue="mail",state="queued"}"#] == 1)
                #expect(samples[#"pq_queue_tasks{queue="default",state="delayed"}"#] == 1)
                #expect(samples["pq_hosts"] == 0)
            }
        }
    }

    /// The store's gauges and a host's registry come out as one valid exposition.
    @Test func hostRegistryIsMergedIntoMetrics() async throws {
        let store = try await Self.makeStore()
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "pq_tasks", unitName: "total", helpText: "runs"),
            labels: [("job", "a \"quoted\"\njob"), ("status", "SUCCESS")]
        ).increment(by: Int64(3))
        registry.makeDurationHistogram(
            descriptor: MetricNameDescriptor(
                metricName: "pq_task_duration", unitName: "seconds", helpText: "durations"), labels: [("job", "echo")],
            buckets: [.milliseconds(10), .seconds(1)]
        )
        .recordNanoseconds(5_000_000)
        let text = try await MetricsText(reads: API.SharedReads(store: store), registry: registry).render(
            subscribers: 2)
        let samples = try PrometheusText.parse(text)
        #expect(samples[#"pq_tasks_total{job="a \"quoted\"\njob",status="SUCCESS"}"#] == 3)
        #expect(samples[#"pq_task_duration_seconds_bucket{job="echo",le="0.01"}"#] == 1)
        #expect(samples[#"pq_task_duration_seconds_count{job="echo"}"#] == 1)
        #expect(samples["pq_http_event_subscribers"] == 2)
        #expect(samples["pq_hosts"] == 0)
    }

    @Test func addressesAndTheLoopbackRule() throws {
        #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "0.0.0.0:5555", token: nil) }
        #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "10.1.2.3:5555", token: "") }
        #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "localhost", token: nil) }
        #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "127.0.0.1:70000", token: nil) }
        let v6 = try HTTPOptions(address: "[::1]:8080", token: nil)
        #expect(v6.host == "::1" && v6.port == 8080)
        let open = try HTTPOptions(address: "0.0.0.0:5555", token: "t")
        #expect(open.token == "t")
        let refused = #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "0.0.0.0:5555", token: nil) }
        #expect(refused?.description.contains("--http-token") == true)
        #expect(throws: HTTPOptionsError.self) { try HTTPOptions(address: "pq.localhost:5555", token: nil) }
        #expect(AccessMiddleware.hostName("127.0.0.1:5555") == "127.0.0.1")
        #expect(AccessMiddleware.hostName("[::1]:5555") == "::1")
        #expect(!HTTPOptions.isLoopback("127.0.0.1.evil.example"))
    }

    /// One store reader fans out to every subscriber; none reads while nobody subscribes.
    @Test func eventHubFansOutAndCloses() async throws {
        let store = try await Self.makeStore()
        let hub = EventHub(store: store, keepAlive: 0.2, logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await hub.run() }
            let a = try #require(hub.subscribe())
            let b = try #require(hub.subscribe())
            #expect(hub.count == 2)
            // Give the hub a moment to follow the store, then queue (the memory store's stream
            // starts at its newest event, so keep queueing until the event arrives: bounded).
            var text = ""
            var iterator = a.messages.makeAsyncIterator()
            let deadline = Date().addingTimeInterval(10)
            var queued: [String] = []
            while Date() < deadline, !queued.contains(where: { text.contains($0) }) {
                queued.append(try await store.enqueue([NewTask(name: "echo", kwargs: #"{"n":1}"#)])[0].id)
                guard let message = await iterator.next() else { break }
                text += String(buffer: message)
            }
            #expect(queued.contains { text.contains($0) }, "\(text)")
            #expect(text.contains("event: queued\ndata: {\"event\":\"queued\",\"task\":"))
            var other = b.messages.makeAsyncIterator()
            var seenByB = ""
            // Bounded by the hub's keep-alive comments (every 0.2 s here) and the deadline.
            while Date() < deadline, let m = await other.next() {
                seenByB += String(buffer: m)
                if queued.contains(where: { seenByB.contains($0) }) { break }
            }
            #expect(queued.contains { seenByB.contains($0) })
            hub.unsubscribe(a.id)
            hub.unsubscribe(b.id)
            #expect(hub.count == 0)
            group.cancelAll()
        }
    }
}

/// A line-by-line reader of the Prometheus text format (0.0.4), strict enough to fail on a
/// malformed line: `# HELP`/`# TYPE` comments, and samples `name{label="value",...} number`.
enum PrometheusText {
    struct Malformed: Error, CustomStringConvertible {
        let line: String
        var description: String { "not Prometheus text: \(line)" }
    }

    /// Samples by their `name{labels}` as written.
    static func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        var types: [String: String] = [:]
        for raw in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = String(raw)
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3])
                else { throw Malformed(line: line) }
                // One family, one TYPE line.
                guard types.updateValue(String(parts[3]), forKey: String(parts[2])) == nil else {
                    throw Malformed(line: line)
                }
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " ") else { throw Malformed(line: line) }
            let key = String(line[..<space])
            let valueText = line[line.index(after: space)...]
            guard let value = Double(valueText) ?? (valueText == "+Inf" ? .infinity : nil) else {
                throw Malformed(line: line)
            }
            let name = key.firstIndex(of: "{").map { String(key[..<$0]) } ?? key
            guard name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil else {
                throw Malformed(line: line)
            }
            if let brace = key.firstIndex(of: "{") {
                guard key.hasSuffix("}") else { throw Malformed(line: line) }
                let labels = key[key.index(after: brace)..<key.index(before: key.endIndex)]
                let pattern = #"^([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*$"#
                guard labels.isEmpty || String(labels).range(of: pattern, options: .regularExpression) != nil else {
                    throw Malformed(line: line)
                }
            }
            samples[key] = value
        }
        return samples
    }
}
