import Foundation
import Testing

/// The HTTP face (DESIGN.md section 11) against a real `bin/pq serve --http` and `bin/pq web`,
/// driven with curl and, for the dashboard, headless Chromium.
@Suite(.serialized) struct HTTPEndToEndTests {
    let dir = Fixtures.temporaryDirectory("pqhttp")

    // MARK: helpers

    /// One HTTP exchange through curl (bounded).
    struct Reply {
        var status: Int
        var body: String
        var parsed: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed]) }
        var object: [String: Any] { parsed as? [String: Any] ?? [:] }
        var array: [[String: Any]] { parsed as? [[String: Any]] ?? [] }
    }

    static func curl(_ method: String, _ url: String, json: String? = nil, headers: [String] = []) async throws -> Reply
    {
        var args = ["-s", "-S", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"]
        for h in headers { args += ["-H", h] }
        if json != nil { args += ["-H", "Content-Type: application/json", "--data-binary", "@-"] }
        let r = try await Fixtures.run(try curlBinary(), args + [url], stdin: json, timeout: 30)
        try #require(r.status == 0, "curl \(method) \(url) failed: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return Reply(status: Int(lines.last ?? "") ?? 0, body: lines.dropLast().joined(separator: "\n"))
    }

    static func curlBinary() throws -> String {
        try #require(
            ["/usr/bin/curl", "/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) },
            "curl is missing (.ci/run installs it)")
    }

    /// The URL a `pq serve --http` or `pq web` printed (bounded wait).
    static func announcedURL(_ log: () -> String, running: () -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let range = log().range(of: #"dashboard and API on (http://[^ \n]+/)"#, options: .regularExpression) {
                let line = String(log()[range])
                return String(line[line.range(of: "http://")!.lowerBound...])
            }
            if !running() { break }
            usleep(20_000)
        }
        Issue.record("no URL announced: \(log())")
        throw CancellationError()
    }

    /// `bin/pq web` in the background, and its URL.
    static func web(
        store: String, arguments: [String] = ["--http", "127.0.0.1:0"], directory: String
    ) throws -> (process: HostProcess, url: String) {
        let web = try HostProcess(
            store: store, arguments: arguments, directory: directory, command: "web", ready: "dashboard and API on")
        return (web, try announcedURL({ web.log }, running: { web.isRunning }))
    }

    /// Polls `GET /api/tasks/ID` until the task is ready (bounded).
    static func waitReady(_ base: String, _ id: String, headers: [String] = [], timeout: Double = 30) async throws
        -> [String:
        Any]
    {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < deadline {
            last = try await curl("GET", base + "api/tasks/" + id, headers: headers).object
            if let s = last["status"] as? Int, [1, 2, 3].contains(s) { return last }
            usleep(50_000)
        }
        Issue.record("task \(id) not ready after \(timeout) s: \(last)")
        return last
    }

    /// Scrapes `/metrics` and parses it line by line (any malformed line fails the test).
    static func metrics(_ base: String, headers: [String] = []) async throws -> [String: Double] {
        let reply = try await curl("GET", base + "metrics", headers: headers)
        try #require(reply.status == 200, "\(reply.body)")
        var samples: [String: Double] = [:]
        for line in reply.body.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") { continue }
            let parts = line.split(separator: " ")
            try #require(parts.count == 2 && Double(parts[1]) != nil, "not a Prometheus sample line: \(line)")
            let key = String(parts[0])
            let name = key.split(separator: "{").first.map(String.init) ?? key
            #expect(name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil, "\(line)")
            if key.contains("{") { #expect(key.hasSuffix("}"), "\(line)") }
            samples[key] = Double(parts[1])
        }
        return samples
    }

    /// `curl -N` on `/api/events`, writing to a file, once the stream's first comment came;
    /// `text` reads what came so far, `headers` the response head.
    func followEvents(_ base: String) throws -> (process: Process, text: () -> String, headers: () -> String) {
        let outPath = dir + "/sse-\(UUID().uuidString.prefix(6)).txt"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        let stream = Process()
        stream.executableURL = URL(fileURLWithPath: try Self.curlBinary())
        stream.arguments = ["-s", "-N", "--max-time", "60", "-D", outPath + ".headers", base + "api/events"]
        stream.standardOutput = FileHandle(forWritingAtPath: outPath)
        try stream.run()
        let text = { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
        let headers = { (try? String(contentsOfFile: outPath + ".headers", encoding: .utf8)) ?? "" }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !text().contains(": pq events") { usleep(20_000) }
        return (stream, text, headers)
    }

    /// Waits (bounded) until the stream holds the done event of `id`.
    static func waitForDone(_ text: () -> String, _ id: String) -> String {
        let deadline = Date().addingTimeInterval(20)
        var seen = ""
        while Date() < deadline {
            seen = text()
            if seen.components(separatedBy: "\n\n").contains(where: { $0.hasPrefix("event: done\n") && $0.contains(id) }
            ) {
                break
            }
            usleep(50_000)
        }
        return seen
    }

    static var isolation: String { ProcessInfo.processInfo.environment["PQ_TEST_ISOLATION"] ?? "process" }

    // MARK: tests

    @Test func serveQueuesRunsAndCountsTasksQueuedThroughTheAPI() async throws {
        let store = "sqlite:\(dir)/serve.sqlite"
        let host = try HostProcess(store: store, arguments: ["--http", "127.0.0.1:0"], directory: dir)
        let base = try Self.announcedURL({ host.log }, running: { host.isRunning })
        #expect(try await Self.curl("GET", base + "healthz").status == 200)
        let jobs = try await Self.curl("GET", base + "api/jobs").array
        #expect(jobs.contains { $0["name"] as? String == "addition" && $0["plugin"] as? String == "examples" })

        let created = try await Self.curl(
            "POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":1,"b":2}}"#)
        #expect(created.status == 201, "\(created.body)")
        let id = try #require(created.object["id"] as? String)
        let done = try await Self.waitReady(base, id)
        #expect(done["status_string"] as? String == "SUCCESS")
        #expect(done["result"] as? Int == 3)
        #expect(done["worker"] as? String != nil)

        // Bad input through the real server: a JSON error, nothing queued.
        let client = PQClient(store: store, directory: dir)
        let before = try await client.run(["tasks", "--json", "--limit", "1000"]).stdout
        let unknown = try await Self.curl("POST", base + "api/tasks", json: #"{"job":"no.such.job"}"#)
        #expect(unknown.status == 400)
        #expect((unknown.object["error"] as? String)?.contains("unknown job 'no.such.job'") == true)
        let notObject = try await Self.curl("POST", base + "api/tasks", json: #"{"job":"addition","kwargs":"a=1"}"#)
        #expect(notObject.status == 400)
        let malformed = try await Self.curl("POST", base + "api/tasks", json: #"{"job":"#)
        #expect(malformed.status == 400)
        let big = #"{"job":"addition","kwargs":{"x":""# + String(repeating: "y", count: 1_100_000) + #""}}"#
        #expect(try await Self.curl("POST", base + "api/tasks", json: big).status == 413)
        #expect(try await Self.curl("DELETE", base + "api/tasks").status == 405)
        #expect(try await Self.curl("GET", base + "api/tasks/0123456789abcdef0123456789abcdef").status == 404)
        // Without a token only requests addressed to a loopback name are answered (a page of
        // another site pointing its own name at 127.0.0.1 gets nothing).
        let rebound = try await Self.curl("GET", base + "api/tasks", headers: ["Host: evil.example:80"])
        #expect(rebound.status == 403)
        #expect(
            try await Self.curl(
                "POST", base + "api/tasks", json: #"{"job":"addition"}"#, headers: ["Origin: http://evil.example"]
            ).status == 403)
        #expect(
            try await Self.curl(
                "POST", base + "api/tasks", json: #"{"job":"addition"}"#, headers: ["Sec-Fetch-Site: cross-site"]
            ).status == 403)
        #expect(try await client.run(["tasks", "--json", "--limit", "1000"]).stdout == before)

        // A worker crash is counted (process isolation: in thread mode it would take the host).
        if Self.isolation == "process" {
            let crash = try await Self.curl("POST", base + "api/tasks", json: #"{"job":"c.crash"}"#)
            let crashID = try #require(crash.object["id"] as? String)
            await #expect(try Self.waitReady(base, crashID)["status_string"] as? String == "FAILURE")
        }
        // The host's metrics (its status is published every few seconds: wait for pq_hosts).
        var samples: [String: Double] = [:]
        let deadline = Date().addingTimeInterval(15)
        repeat {
            samples = try await Self.metrics(base)
            if samples["pq_hosts"] == 1 { break }
            usleep(200_000)
        } while Date() < deadline
        #expect(samples["pq_hosts"] == 1)
        #expect(samples[#"pq_tasks_total{job="addition",status="SUCCESS"}"#] == 1)
        #expect(samples[#"pq_task_duration_seconds_count{job="addition"}"#] == 1)
        #expect(samples.keys.contains { $0.hasPrefix(#"pq_task_duration_seconds_bucket{job="addition",le="#) })
        #expect(samples["pq_running_tasks"] != nil)
        #expect((samples["pq_plugin_loads_total"] ?? 0) >= 2)
        #expect(samples.keys.contains { $0.hasPrefix(#"pq_queue_latency_seconds_count{queue="default"}"#) })
        if Self.isolation == "process" {
            #expect(samples["pq_worker_crashes_total"] == 1)
            #expect(samples[#"pq_tasks_total{job="c.crash",status="FAILURE"}"#] == 1)
        }
        let hosts = try await Self.curl("GET", base + "api/hosts").array
        #expect(hosts.count == 1)
        #expect(hosts.first?["concurrent_tasks"] as? Int == 5)
        #expect(host.stop() == 0)
    }

    @Test func eventStreamDeliversTheDoneEvent() async throws {
        let store = "sqlite:\(dir)/sse.sqlite"
        let host = try HostProcess(store: store, arguments: ["--http", "127.0.0.1:0"], directory: dir)
        let base = try Self.announcedURL({ host.log }, running: { host.isRunning })
        // The stream's first comment comes once the server follows the store: events after it
        // reach the client. SIGKILL at the end: the test process's own signal set-up may leave
        // a child deaf to SIGTERM.
        let (stream, text, headers) = try followEvents(base)
        defer { if stream.isRunning { kill(stream.processIdentifier, SIGKILL) } }
        #expect(try await Self.metrics(base)["pq_http_event_subscribers"] == 1)
        let id = try #require(
            try await Self.curl("POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":20,"b":22}}"#)
                .object[
                    "id"] as? String)
        let seen = Self.waitForDone(text, id)
        #expect(headers().lowercased().contains("content-type: text/event-stream"))
        // Each message: `event: <kind>` then `data: <the JSON object of a pq watch line>`.
        let messages = seen.components(separatedBy: "\n\n").filter { $0.hasPrefix("event: ") }
        let done = try #require(messages.first { $0.hasPrefix("event: done\n") && $0.contains(id) }, "stream: \(seen)")
        let data = try #require(done.split(separator: "\n").first { $0.hasPrefix("data: ") }?.dropFirst(6))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "done")
        let task = try #require(object["task"] as? [String: Any])
        #expect(task["id"] as? String == id)
        #expect(task["result"] as? Int == 42)
        #expect(messages.contains { $0.hasPrefix("event: queued\n") && $0.contains(id) })
        kill(stream.processIdentifier, SIGKILL)
        stream.waitUntilExit()
        #expect(host.stop() == 0)
    }

    @Test(arguments: ["sqlite", "redis"])
    func webServesAStoreWithoutAHost(kind: String) async throws {
        let store =
            kind == "redis" ? try TestRedis.urlText(namespace: TestRedis.uniqueNamespace()) : "sqlite:\(dir)/web.sqlite"
        let host = try HostProcess(store: store, directory: dir)
        let (web, base) = try Self.web(store: store, directory: dir)
        // Jobs come from what the host published.
        var jobs: [[String: Any]] = []
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, jobs.isEmpty {
            jobs = try await Self.curl("GET", base + "api/jobs").array
            if jobs.isEmpty { usleep(100_000) }
        }
        #expect(jobs.contains { $0["name"] as? String == "c.mul" })
        // Events on both stores: SQLite's log, Redis's pub/sub.
        let (stream, text, _) = try followEvents(base)
        defer { kill(stream.processIdentifier, SIGKILL) }
        let id = try #require(
            try await Self.curl("POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":2,"b":5}}"#).object[
                "id"]
                as? String)
        await #expect(try Self.waitReady(base, id)["result"] as? Int == 7)
        let seen = Self.waitForDone(text, id)
        #expect(
            seen.components(separatedBy: "\n\n").contains { $0.hasPrefix("event: done\n") && $0.contains(id) },
            "\(seen)")
        // Revoke a delayed task through the API.
        let later = try #require(
            try await Self.curl(
                "POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":1,"b":1},"delay":600}"#
            )
            .object["id"] as? String)
        let queued = try await Self.curl("GET", base + "api/tasks?status=QUEUED&job=addition").array
        #expect(queued.map { $0["id"] as? String } == [later])
        let revoked = try await Self.curl("POST", base + "api/tasks/\(later)/revoke", json: "{}")
        #expect(revoked.status == 200)
        #expect(revoked.object["outcome"] as? String == "revoked")
        #expect(
            try await Self.curl("GET", base + "api/tasks/" + later).object["status_string"] as? String == "REVOKED")
        #expect(try await Self.curl("POST", base + "api/tasks/\(later)/revoke", json: "{}").status == 409)
        // The store's gauges; no host counters in a process that runs no host.
        let samples = try await Self.metrics(base)
        #expect(samples.keys.contains("pq_hosts"))
        #expect(!samples.keys.contains { $0.hasPrefix("pq_tasks_total") })
        #expect(web.stop() == 0)
        #expect(host.stop() == 0)
    }

    @Test func tokenAndLoopbackRules() async throws {
        let store = "sqlite:\(dir)/token.sqlite"
        // No token: loopback only, refused in one line naming the flag.
        let open = try await PQCommand.run(
            ["web", "--http", "0.0.0.0:0"], environment: ["PQ_STORE": store], timeout: 20)
        expectOneLineError(open, ["--http-token", "0.0.0.0:0"])
        let badAddress = try await PQCommand.run(
            ["web", "--http", "localhost"], environment: ["PQ_STORE": store], timeout: 20)
        expectOneLineError(badAddress, ["HOST:PORT"])
        // With a token (from pq.toml here) any address may be used, and nothing answers without it.
        let configDir = Fixtures.temporaryDirectory("pqhttptoml")
        try "http = \"0.0.0.0:0\"\nhttp_token = \"s3cret\"\n".write(
            toFile: configDir + "/pq.toml", atomically: true, encoding: .utf8)
        let host = try HostProcess(store: store, directory: dir)
        let (web, announced) = try Self.web(store: store, arguments: [], directory: configDir)
        let base = announced.replacingOccurrences(of: "0.0.0.0", with: "127.0.0.1")
        #expect(try await Self.curl("GET", base + "healthz").status == 200)
        for route in ["api/queues", "api/jobs", "api/tasks", "metrics", "api/events", ""] {
            #expect(try await Self.curl("GET", base + route).status == 401, "\(route)")
        }
        let refused = try await Self.curl(
            "POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":1,"b":2}}"#)
        #expect(refused.status == 401)
        #expect(
            try await Self.curl(
                "POST", base + "api/tasks", json: #"{"job":"addition"}"#, headers: ["Authorization: Bearer wrong"]
            ).status == 401)
        let auth = ["Authorization: Bearer s3cret"]
        // Nothing was queued.
        #expect(try await Self.curl("GET", base + "api/tasks", headers: auth).array.isEmpty)
        #expect(try await Self.curl("GET", base + "api/queues", headers: auth).status == 200)
        let ok = try await Self.curl(
            "POST", base + "api/tasks", json: #"{"job":"addition","kwargs":{"a":1,"b":2}}"#, headers: auth)
        #expect(ok.status == 201)
        #expect(web.stop() == 0)
        #expect(host.stop() == 0)
    }

    /// The dashboard in headless Chromium: a task queued through the API appears without a
    /// reload, and kwargs holding markup stay text.
    @Test func dashboardShowsTasksLiveAndKwargsAsText() async throws {
        let store = "sqlite:\(dir)/browser.sqlite"
        let host = try HostProcess(store: store, arguments: ["--http", "127.0.0.1:0"], directory: dir)
        let base = try Self.announcedURL({ host.log }, running: { host.isRunning })
        try await checkInBrowser(base, token: nil)
        // The token flow: the page asks for it, then goes live with it.
        let (web, url) = try Self.web(
            store: store, arguments: ["--http", "127.0.0.1:0", "--http-token", "t0ken"], directory: dir)
        try await checkInBrowser(url, token: "t0ken")
        #expect(web.stop() == 0)
        #expect(host.stop() == 0)
    }

    private func checkInBrowser(_ base: String, token: String?) async throws {
        let script = Fixtures.packageRoot + "/scripts/browser-check.py"
        let outPath = dir + "/browser-\(UUID().uuidString.prefix(6)).txt"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        let browser = Process()
        browser.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        browser.arguments = ["python3", script, base] + (token.map { ["--token", $0] } ?? [])
        let input = Pipe()
        browser.standardInput = input
        browser.standardOutput = FileHandle(forWritingAtPath: outPath)
        browser.standardError = FileHandle(forWritingAtPath: outPath)
        try browser.run()
        defer {
            try? input.fileHandleForWriting.close()
            let deadline = Date().addingTimeInterval(15)
            while browser.isRunning && Date() < deadline { usleep(20_000) }
            if browser.isRunning { kill(browser.processIdentifier, SIGKILL) }
        }
        func output() -> String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
        func waitLine(after count: Int) async -> String? {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                let lines = output().split(separator: "\n")
                if lines.count > count { return String(lines[count]) }
                if !browser.isRunning { return nil }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return nil
        }
        let first = await waitLine(after: 0)
        try #require(first == "ready", "browser: \(output())")
        // The page is open and live; now queue a task whose kwargs hold markup.
        let hostile = #"<script>document.title='pwned'</script><img src=x onerror="document.title='pwned'">"#
        let body = JSONValueText.object(["job": "c.echo", "kwargs": ["note": hostile]])
        let auth = token.map { ["Authorization: Bearer \($0)"] } ?? []
        let created = try await Self.curl("POST", base + "api/tasks", json: body, headers: auth)
        let id = try #require(created.object["id"] as? String, "\(created.body)")
        input.fileHandleForWriting.write(Data("task \(id)\n".utf8))
        let answer = try #require(await waitLine(after: 1), "browser: \(output())")
        let row = try #require(try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any], "\(answer)")
        #expect(row["found"] as? Bool == true, "the task did not appear without a reload: \(answer)")
        // It came through the event stream (the page also reloads its list every 15 s).
        #expect(row["in_events"] as? Bool == true, "\(answer)")
        let cells = row["cells"] as? [String] ?? []
        #expect(cells.contains { $0.contains("<script>document.title='pwned'</script>") }, "\(cells)")
        #expect((row["titles"] as? [String] ?? []).contains { $0.contains(#"onerror=\"document.title='pwned'\""#) })
        #expect(row["markup_from_data"] as? Int == 0)
        #expect(row["title"] as? String != "pwned")
        input.fileHandleForWriting.write(Data("quit\n".utf8))
    }
}

/// Tiny JSON text builder for request bodies.
enum JSONValueText {
    static func object(_ value: [String: Any]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]), as: UTF8.self)
    }
}
