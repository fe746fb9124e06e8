import HTTPTypes
import Hummingbird
import NIOCore
import PQCore
import Synchronization

/// The routes of section 11, answered from the store.
struct API: Sendable {
    let store: any TaskStore
    let options: HTTPOptions
    let hub: EventHub
    let metrics: MetricsText
    /// The aggregate reads, shared by concurrent requests (see ``Coalesced``).
    let reads: SharedReads

    /// Headers of the dashboard page: nothing from elsewhere may load, run or frame it.
    static let pageHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .contentSecurityPolicy:
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        .xContentTypeOptions: "nosniff",
        .cacheControl: "no-store",
    ]

    /// The methods each path answers; any other method gets 405 with `Allow`.
    static let routes: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/", [.get]), ("/healthz", [.get]), ("/metrics", [.get]),
        ("/api/jobs", [.get]), ("/api/tasks", [.get, .post]), ("/api/tasks/{id}", [.get]),
        ("/api/tasks/{id}/revoke", [.post]), ("/api/queues", [.get]), ("/api/hosts", [.get]),
        ("/api/schedule", [.get]), ("/api/events", [.get]),
    ]

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: Self.pageHeaders, body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get("/healthz") { _, _ in Self.json(#"{"status":"ok"}"#) }
        router.get("/metrics") { _, _ in
            let text = try await metrics.render(subscribers: hub.count)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/api/jobs") { _, _ in
            Self.json(JSONValue.array(try await reads.jobs.get().map(\.listingJSON)).jsonText)
        }
        router.get("/api/queues") { _, _ in
            Self.json(JSONValue.array(try await reads.queues.get().map(\.listingJSON)).jsonText)
        }
        router.get("/api/hosts") { _, _ in
            Self.json("[" + (try await reads.hosts.get()).joined(separator: ",") + "]")
        }
        router.get("/api/schedule") { _, _ in
            let now = TaskClock.now()
            return Self.json(
                ScheduleListing.json(ScheduleListing.rows(published: try await reads.jobs.get(), now: now), now: now)
                    .jsonText)
        }
        router.get("/api/tasks") { request, _ in try await listTasks(request) }
        router.post("/api/tasks") { request, _ in try await submit(request) }
        router.get("/api/tasks/{id}") { _, context in
            let id = try context.parameters.require("id")
            guard let task = try await store.task(id: id) else { throw APIError(.notFound, "no task with id \(id)") }
            return Self.json(task.json())
        }
        router.post("/api/tasks/{id}/revoke") { _, context in try await revoke(try context.parameters.require("id")) }
        router.get("/api/events") { request, _ in events(request) }
        for route in Self.routes {
            let allowed = route.methods.map(\.rawValue).joined(separator: ", ")
            for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete, .options, .head]
            where !route.methods.contains(method) {
                router.on(RouterPath(route.path), method: method) { request, _ in
                    var response = APIError(
                        .methodNotAllowed, "\(request.method) is not allowed on \(route.path); use \(allowed)"
                    ).response
                    response.headers[.allow] = allowed
                    return response
                }
            }
        }
    }

    /// Aggregates every viewer asks for: one store read per quarter second however many ask.
    final class SharedReads: Sendable {
        let queues: Coalesced<[QueueSize]>
        let hosts: Coalesced<[String]>
        let jobs: Coalesced<[JobInfo]>
        /// Task listings by their query (each open dashboard asks for its own).
        let listings: Mutex<[String: Coalesced<String>]> = Mutex([:])
        let maxAge: Double

        /// The listing of `key`, read by `fetch` unless a fresh one is shared.
        func tasks(_ key: String, _ fetch: @escaping @Sendable () async throws -> String) async throws -> String {
            let maxAge = self.maxAge
            let shared = listings.withLock { all -> Coalesced<String> in
                if let c = all[key] { return c }
                if all.count >= 256 { all.removeAll() }  // bounded: queries are few in practice
                let c = Coalesced(maxAge: maxAge, fetch)
                all[key] = c
                return c
            }
            return try await shared.get()
        }

        /// Seconds a host status counts as alive (as `pq hosts`).
        static let hostWindow = 60.0

        init(store: any TaskStore, maxAge: Double = 0.25) {
            self.maxAge = maxAge
            queues = Coalesced(maxAge: maxAge) { try await store.queueSizes() }
            hosts = Coalesced(maxAge: maxAge) { try await store.hostStatuses(since: TaskClock.now() - Self.hostWindow) }
            jobs = Coalesced(maxAge: maxAge) { try await store.publishedJobs() }
        }
    }

    static func json(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json", .cacheControl: "no-store", .xContentTypeOptions: "nosniff"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// `GET /api/tasks?status=&job=&queue=&limit=`: newest first.
    func listTasks(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        func value(_ key: String) -> String? {
            guard let v = query[Substring(key)], !v.isEmpty else { return nil }
            return String(v)
        }
        var status: TaskStatus?
        if let text = value("status") {
            guard let s = TaskStatus(parsing: text) else {
                throw APIError(
                    .badRequest,
                    "status must be one of QUEUED STARTED RETRY REVOKED FAILURE SUCCESS or 1-6, got '\(text)'")
            }
            status = s
        }
        var limit = 50
        if let text = value("limit") {
            guard let n = Int(text), (1...10_000).contains(n) else {
                throw APIError(.badRequest, "limit must be a whole number from 1 to 10000, got '\(text)'")
            }
            limit = n
        }
        let (job, queue) = (value("job"), value("queue"))
        let key = "\(status?.rawValue ?? 0)|\(limit)|\(job ?? "")\u{1F}\(queue ?? "")"
        let text = try await reads.tasks(key) { [store, status, limit] in
            let tasks = try await store.tasks(status: status, job: job, queue: queue, limit: limit)
            return "[" + tasks.map { $0.json() }.joined(separator: ",") + "]"
        }
        return Self.json(text)
    }

    /// `POST /api/tasks`: `{"job", "kwargs", "delay", "timeout", "expiry", "queue"}`; 201 and the task.
    func submit(_ request: Request) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > options.bodyLimit {
            throw APIError(
                .contentTooLarge,
                "the request body is \(length) bytes, over the limit of \(options.bodyLimit) bytes; nothing was queued")
        }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: options.bodyLimit) } catch {
            throw APIError(
                .contentTooLarge, "the request body is over the limit of \(options.bodyLimit) bytes; nothing was queued"
            )
        }
        let text = String(buffer: body)
        let parsed: JSONValue
        do { parsed = try JSONValue.parse(text) } catch {
            throw APIError(.badRequest, "the body is not valid JSON (\(error)); nothing was queued")
        }
        guard case .object(let fields) = parsed else {
            throw APIError(
                .badRequest,
                "the body must be a JSON object like {\"job\": \"name\", \"kwargs\": {}}, got \(parsed.typeName); nothing was queued"
            )
        }
        let known: Set<String> = ["job", "kwargs", "delay", "timeout", "expiry", "queue"]
        if let unknown = fields.first(where: { !known.contains($0.0) }) {
            throw APIError(
                .badRequest,
                "unknown field '\(unknown.0)' (known: delay, expiry, job, kwargs, queue, timeout); nothing was queued")
        }
        func field(_ key: String) -> JSONValue? {
            guard let v = fields.first(where: { $0.0 == key })?.1, v != .null else { return nil }
            return v
        }
        guard case .string(let job)? = field("job"), !job.isEmpty else {
            throw APIError(.badRequest, "'job' must be the name of a job (a non-empty string); nothing was queued")
        }
        var kwargs = "{}"
        if let k = field("kwargs") {
            guard case .object = k else {
                throw APIError(
                    .badRequest,
                    "'kwargs' must be a JSON object of keyword arguments, got \(k.typeName); nothing was queued")
            }
            kwargs = k.jsonText
        }
        func seconds(_ key: String, allowZero: Bool) throws -> Double? {
            guard let v = field(key) else { return nil }
            guard let d = v.doubleValue, d.isFinite, allowZero ? d >= 0 : d > 0 else {
                throw APIError(
                    .badRequest,
                    "'\(key)' must be a number of seconds \(allowZero ? ">= 0" : "> 0"); nothing was queued")
            }
            return d
        }
        let delay = try seconds("delay", allowZero: true)
        let timeout = try seconds("timeout", allowZero: false)
        let expiry = try seconds("expiry", allowZero: false)
        var queue: String?
        if let q = field("queue") {
            guard case .string(let s) = q, !s.isEmpty else {
                throw APIError(.badRequest, "'queue' must be a non-empty string; nothing was queued")
            }
            queue = s
        }
        do { kwargs = try TaskArguments.validate(kwargs) } catch {
            throw APIError(.badRequest, "\(error); nothing was queued")
        }
        // Read afresh: a job a host published a moment ago must be known here.
        let published = try await store.publishedJobs()
        guard let info = published.first(where: { $0.name == job }) else {
            var message = "unknown job '\(job)': no running host has published it"
            let names = Set(published.map(\.name)).sorted()
            if !names.isEmpty { message += "; known jobs: " + names.prefix(20).joined(separator: ", ") }
            throw APIError(.badRequest, message + "; nothing was queued")
        }
        if let text = info.signature, let signature = try? TypedSignature.parse(text) {
            do { try signature.check(kwargsJSON: kwargs) } catch {
                throw APIError(.badRequest, "job '\(job)': \(error); nothing was queued")
            }
        }
        var task = NewTask(
            options: info.jobOptions, name: job, kwargs: kwargs, queue: queue, delay: delay, timeout: timeout,
            expiry: expiry.map { TaskClock.now() + $0 })
        task.plugin = info.plugin
        task.pluginVersion = info.pluginVersion
        let records = try await store.enqueue([task])
        guard let record = records.first else { throw APIError(.internalServerError, "the store queued nothing") }
        var response = Self.json(record.json(), status: .created)
        response.headers[.location] = "/api/tasks/" + record.id
        return response
    }

    /// `POST /api/tasks/{id}/revoke`: as `pq revoke`.
    func revoke(_ id: String) async throws -> Response {
        switch try await store.revoke(id: id) {
        case .revoked(let task):
            return Self.json(
                #"{"id":\#(JSONValue.string(task.id).jsonText),"outcome":"revoked","task":\#(task.json())}"#)
        case .cancelRequested:
            return Self.json(
                JSONValue.object([("id", .string(id)), ("outcome", .string("cancel_requested"))]).jsonText,
                status: .accepted)
        case .alreadyFinished(let status):
            throw APIError(.conflict, "task \(id) is already finished (\(status.name)); nothing to revoke")
        case .notFound:
            throw APIError(.notFound, "no task with id \(id)")
        }
    }

    /// `GET /api/events`: Server-Sent Events, `event: <kind>` and `data: <pq watch line>`.
    ///
    /// The subscription is made once the response head is out (so a client gone before it
    /// leaves nothing behind) and ends the moment the client closes its side; the stream's first
    /// comment is written once the hub follows the store, so what happens after it arrives.
    func events(_ request: Request) -> Response {
        if hub.isClosed { return APIError(.serviceUnavailable, "the server is shutting down").response }
        let hub = self.hub
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store", .init("X-Accel-Buffering")!: "no"],
            body: ResponseBody { writer in
                guard let (id, messages) = hub.subscribe() else {
                    try await writer.finish(nil)
                    return
                }
                defer { hub.unsubscribe(id) }
                await hub.waitUntilFollowing()
                try await request.body.consumeWithInboundCloseHandler { _ in
                    try await writer.write(ByteBuffer(string: ": pq events\nretry: 2000\n\n"))
                    for await message in messages {
                        try await writer.write(message)
                        hub.written(id, bytes: message.readableBytes)
                    }
                } onInboundClosed: {
                    hub.unsubscribe(id)
                }
                try await writer.finish(nil)
            })
    }
}
