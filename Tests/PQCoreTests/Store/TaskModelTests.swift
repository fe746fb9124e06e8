import Foundation
import PQCore
import Testing

@Suite("Task model (Store)")
struct TaskModelTests {
    @Test func statusNumbersAndNames() {
        #expect(TaskStatus.queued.rawValue == 6 && TaskStatus.started.rawValue == 5)
        #expect(TaskStatus.retry.rawValue == 4 && TaskStatus.revoked.rawValue == 3)
        #expect(TaskStatus.failure.rawValue == 2 && TaskStatus.success.rawValue == 1)
        #expect(TaskStatus.allCases.map(\.name) == ["QUEUED", "STARTED", "RETRY", "REVOKED", "FAILURE", "SUCCESS"])
        #expect(TaskStatus.fullRunStates == [.failure, .success])
        #expect(TaskStatus.readyStates == [.revoked, .failure, .success])
        #expect(TaskStatus.allCases.filter(\.isReady) == [.revoked, .failure, .success])
    }

    @Test func statusParsesNamesAndNumbers() {
        #expect(TaskStatus(parsing: "success") == .success)
        #expect(TaskStatus(parsing: " RETRY ") == .retry)
        #expect(TaskStatus(parsing: "6") == .queued)
        #expect(TaskStatus(parsing: "7") == nil)
        #expect(TaskStatus(parsing: "done") == nil)
    }

    @Test func legalTransitions() throws {
        let legal: [(TaskStatus, TaskStatus)] = [
            (.queued, .started), (.queued, .revoked),
            (.started, .success), (.started, .failure), (.started, .retry), (.started, .revoked), (.started, .queued),
            (.retry, .started), (.retry, .revoked),
        ]
        for from in TaskStatus.allCases {
            for to in TaskStatus.allCases {
                let expected = legal.contains { $0 == (from, to) }
                #expect(from.canMove(to: to) == expected, "\(from) → \(to)")
            }
        }
        #expect(try TaskStatus.queued.moving(to: .started) == .started)
    }

    @Test func illegalTransitionsThrowWithTheTask() {
        for ready in TaskStatus.readyStates {
            for next in TaskStatus.allCases {
                #expect(throws: TaskStoreError.self) { try ready.moving(to: next, taskID: "abc") }
            }
        }
        do {
            _ = try TaskStatus.queued.moving(to: .success, taskID: "abc")
            Issue.record("QUEUED → SUCCESS was allowed")
        } catch {
            #expect(error.code == .illegalTransition)
            #expect(error.taskID == "abc")
            #expect(error.message == "task abc cannot move from QUEUED to SUCCESS")
        }
    }

    @Test func idsAreUUIDHex() {
        let ids = (0..<100).map { _ in TaskID.make() }
        #expect(Set(ids).count == 100)
        #expect(ids.allSatisfy(TaskID.isValid))
        #expect(ids.allSatisfy { $0[$0.index($0.startIndex, offsetBy: 12)] == "4" })
        #expect(!TaskID.isValid("ABCDEF0123456789abcdef0123456789"))
        #expect(!TaskID.isValid("abc"))
    }

    @Test func jsonHasExactlyTheDesignedKeys() throws {
        let record = TaskRecord(
            id: "0123456789abcdef0123456789abcdef", name: "add", status: .success, queue: "q",
            kwargs: #" {"a": 1, "b": "x\"y"} "#, result: #"{"sum": 3}"#, exception: nil, timeQueued: 1_700_000_000.25,
            timeStarted: 1_700_000_001.5, timeEnded: 1_700_000_002.75, delay: nil, timeout: 10, expiry: nil,
            retry: 1, maxRetries: 3, fromTask: nil, node: "box", worker: "box:42", plugin: "math",
            pluginVersion: "1.0", maxConcurrency: 2, canOverlap: false, deadRuns: 1)
        let text = record.json()
        #expect(!text.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(
            Set(object.keys) == [
                "id", "name", "status", "status_string", "queue", "kwargs", "result", "exception", "time_queued",
                "time_started", "time_ended", "delay", "timeout", "expiry", "retry", "max_retries", "from_task",
                "node", "worker", "plugin", "plugin_version",
            ])
        #expect(object["status"] as? Int == 1)
        #expect(object["status_string"] as? String == "SUCCESS")
        #expect((object["kwargs"] as? [String: Any])?["b"] as? String == "x\"y")
        #expect((object["result"] as? [String: Any])?["sum"] as? Int == 3)
        #expect(object["exception"] is NSNull)
        #expect(object["delay"] is NSNull)
        #expect(object["time_queued"] as? Double == 1_700_000_000.25)
        #expect(object["timeout"] as? Double == 10)
        #expect(object["worker"] as? String == "box:42")
        #expect(object["max_retries"] as? Int == 3)
        #expect(text.hasPrefix(#"{"id":"0123456789abcdef0123456789abcdef","name":"add","status":1,"#))
    }

    /// The fixed members the Redis store keeps read back to the same fields, and the task JSON is
    /// those runs with the changing members between them, in the designed key order.
    @Test func fixedJSONMembersRoundTrip() throws {
        let record = TaskRecord(
            id: "id-\"quoted\"", name: "add", status: .retry, queue: "q\\slow",
            kwargs: #"{"a": [1, {"b": "x\u0000y,\"z"}], "é": null}"#,
            exception: "boom", timeQueued: 1_700_000_000.125, delay: 2.5, timeout: 10, expiry: 1_800_000_000,
            retry: 2, maxRetries: 5, fromTask: "parent\n1")
        let members = record.fixedJSONMembers
        #expect(members.split(separator: "\u{0}", omittingEmptySubsequences: false).count == 5)
        let back = try TaskRecord(fixedJSONMembers: members)
        #expect(back.id == record.id && back.name == record.name && back.queue == record.queue)
        #expect(back.kwargs == record.kwargs)
        #expect(
            back.timeQueued == record.timeQueued && back.delay == 2.5 && back.timeout == 10
                && back.expiry == 1_800_000_000)
        #expect(back.maxRetries == 5 && back.fromTask == "parent\n1")
        #expect(back.eta == record.timeQueued + 2.5)
        #expect(throws: JSONParseError.self) { _ = try TaskRecord(fixedJSONMembers: "\"id\":\"x\"") }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(record.json().utf8)) as? [String: Any])
        #expect(object["queue"] as? String == "q\\slow")
        #expect(object["status_string"] as? String == "RETRY")
    }

    @Test func jsonEscapesStrings() throws {
        var record = TaskRecord(id: TaskID.make(), name: "a", timeQueued: 1)
        record.exception = "line1\nline2\t\"quoted\" \\ \u{1} é"
        record.result = "\"a string result\""
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(record.json().utf8)) as? [String: Any])
        #expect(object["exception"] as? String == record.exception)
        #expect(object["result"] as? String == "a string result")
        #expect(object["kwargs"] is [String: Any])
    }

    @Test func retryETAUsesBackoff() {
        var record = TaskRecord(id: TaskID.make(), name: "a", timeQueued: 0, retry: 3, retryDelay: 2)
        #expect(record.retryETA(now: 100) == 102)
        record.retryBackoff = true
        #expect(record.retryETA(now: 100) == 108)
        record.retryJitter = true
        let eta = record.retryETA(now: 100)
        #expect(eta >= 108 && eta <= 110)
        #expect(record.mayRetry == false)
        record.maxRetries = 3
        #expect(record.mayRetry)
    }
}

@Suite("Store URLs")
struct StoreURLTests {
    @Test func acceptedForms() throws {
        #expect(try StoreURL(parsing: "memory:") == .memory)
        #expect(try StoreURL(parsing: "sqlite:pq.db") == .sqlite(path: "pq.db"))
        #expect(try StoreURL(parsing: "sqlite:var/pq.db") == .sqlite(path: "var/pq.db"))
        #expect(try StoreURL(parsing: "sqlite:/var/lib/pq.db") == .sqlite(path: "/var/lib/pq.db"))
        #expect(try StoreURL(parsing: "sqlite:///var/lib/pq.db") == .sqlite(path: "/var/lib/pq.db"))
        #expect(
            try StoreURL(parsing: "redis://localhost:6379/0")
                == .redis(RedisStoreURL(host: "localhost", port: 6379, database: 0, namespace: "pq")))
        #expect(
            try StoreURL(parsing: "redis://bob:p%40ss@db.example:6380/3?namespace=jobs")
                == .redis(
                    RedisStoreURL(
                        host: "db.example", port: 6380, database: 3, namespace: "jobs", user: "bob", password: "p@ss")))
        #expect(try StoreURL(parsing: "redis://:secret@h") == .redis(RedisStoreURL(host: "h", password: "secret")))
        #expect(
            try StoreURL(parsing: "redis://[::1]:7000/1") == .redis(RedisStoreURL(host: "::1", port: 7000, database: 1))
        )
        #expect(try StoreURL(parsing: "redis://bob:secret@h:1/2").description == "redis://bob:***@h:1/2?namespace=pq")
    }

    @Test func redissURLsCarryTheirTLSSettings() throws {
        #expect(try StoreURL(parsing: "redis://h") == .redis(RedisStoreURL(host: "h", tls: nil)))
        #expect(try StoreURL(parsing: "rediss://h") == .redis(RedisStoreURL(host: "h", tls: .init())))
        #expect(
            try StoreURL(parsing: "rediss://127.0.0.1:6380/0?tls_ca=/etc/pq/ca.pem")
                == .redis(RedisStoreURL(host: "127.0.0.1", port: 6380, tls: .init(caFile: "/etc/pq/ca.pem"))))
        let text =
            "rediss://bob:secret@db.example:6380/3?namespace=jobs&tls_cert=my%20client.pem&tls_key=client.key"
            + "&tls_verify=none"
        let url = RedisStoreURL(
            host: "db.example", port: 6380, database: 3, namespace: "jobs", user: "bob", password: "secret",
            tls: .init(certificateFile: "my client.pem", keyFile: "client.key", verifyCertificate: false))
        #expect(try StoreURL(parsing: text) == .redis(url))
        #expect(
            url.description
                == "rediss://bob:***@db.example:6380/3?namespace=jobs&tls_cert=my client.pem&tls_key=client.key"
                + "&tls_verify=none")
        #expect(try StoreURL(parsing: "rediss://h?tls_verify=full") == .redis(RedisStoreURL(host: "h", tls: .init())))
        #expect(
            try StoreURL(parsing: "rediss://[::1]/0?tls_ca=a.pem").description
                == "rediss://[::1]:6379/0?namespace=pq&tls_ca=a.pem")
    }

    @Test(arguments: [
        "", "sqlite:", "sqlite:dir/", "pq.db", "/tmp/pq.db", "postgres://x", "redis://", "redis://h:0",
        "redis://h:99999", "redis://h:port", "redis://h/x", "redis://h/0?db=1", "redis://h/0?namespace=",
        "rediss://", "redis://h/0?tls_ca=ca.pem", "rediss://h/0?tls_ca=", "rediss://h/0?tls_cert=c.pem",
        "rediss://h/0?tls_key=k.pem", "rediss://h/0?tls_verify=maybe", "rediss://h/0?tls_sni=x",
    ])
    func malformedURLsGiveOneClearLine(text: String) {
        do {
            _ = try StoreURL(parsing: text)
            Issue.record("\(text) was accepted")
        } catch {
            #expect(error.code == .invalidStoreURL)
            #expect(error.message.hasPrefix("invalid store URL \"\(text)\": "))
            #expect(error.message.hasSuffix(StoreURL.acceptedForms))
            #expect(!error.message.contains("\n"))
        }
    }

    @Test func makeStoreOpensMemoryAndSQLite() async throws {
        let memory = try makeStore(url: .memory)
        #expect(memory is MemoryTaskStore)
        let folder = try makeTempFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let sqlite = try makeStore(url: .sqlite(path: folder.appendingPathComponent("x.db").path))
        #expect(sqlite is SQLiteTaskStore)
        await sqlite.close()
        do {
            _ = try makeStore(url: StoreURL(parsing: "redis://localhost"))
            Issue.record("redis accepted")
        } catch let error as TaskStoreError {
            #expect(error.code == .unsupportedStore)
        }
    }
}
