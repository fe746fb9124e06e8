import Foundation
import HTTPTypes
public import Hummingbird
public import Logging
import NIOCore
public import PQCore
public import Prometheus
public import ServiceLifecycle

/// The HTTP face of pq (DESIGN.md section 11): the JSON API, the live dashboard, `/metrics` and
/// `/healthz`, on Hummingbird 2.
///
/// `pq serve --http` runs it beside the host's services, `pq web` on its own; both answer from
/// the store, so a page served by one host shows every host on the store. It is a `Service`: it
/// stops at the service group's graceful shutdown, closing open event streams first.
public struct HTTPServer: Service {
    let store: any TaskStore
    let options: HTTPOptions
    let logger: Logger
    let registry: PrometheusCollectorRegistry?
    let hub: EventHub
    let onListening: @Sendable (String) -> Void

    /// Creates the server.
    /// - Parameters:
    ///   - store: where the tasks are.
    ///   - options: address and token.
    ///   - registry: the host's own metrics, exported on `/metrics` (nil: only the store's gauges).
    ///   - logger: where log lines go.
    ///   - onListening: told `http://HOST:PORT/` once the socket is bound.
    public init(
        store: any TaskStore, options: HTTPOptions, registry: PrometheusCollectorRegistry?, logger: Logger,
        onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.store = store
        self.options = options
        self.logger = logger
        self.registry = registry
        self.hub = EventHub(store: store, keepAlive: options.keepAlive, logger: logger)
        self.onListening = onListening
    }

    /// The routes, for ``run()`` and for in-process tests.
    public func makeRouter() -> Router<BasicRequestContext> {
        let reads = API.SharedReads(store: store, maxAge: options.aggregateMaxAge)
        let api = API(
            store: store, options: options, hub: hub, metrics: MetricsText(reads: reads, registry: registry),
            reads: reads)
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: ErrorMiddleware(logger: logger))
        router.add(middleware: AccessMiddleware(token: options.token))
        api.register(on: router)
        return router
    }

    /// Runs the listener and the event fan-out until graceful shutdown.
    ///
    /// The fan-out runs beside the application, not among its services: a service group shuts
    /// its services down one after another, and the listener waits for open responses, so open
    /// event streams would hold it until their clients left. Here both see the shutdown at once:
    /// the fan-out ends every stream and the listener's wait is short.
    public func run() async throws {
        let host = options.host
        let onListening = self.onListening
        let logger = self.logger
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(host, port: options.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                let shown = host.contains(":") ? "[\(host)]" : host
                let url = "http://\(shown):\(port)/"
                logger.info("serving HTTP on \(url)")
                onListening(url)
            },
            logger: logger)
        let hub = self.hub
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await hub.run() }
            group.addTask { try await app.run() }
            // Either ending ends both (the listener failing to bind, or a shutdown).
            defer { group.cancelAll() }
            try await group.next()
            try await group.next()
        }
    }
}

/// Turns every error into `{"error": "..."}` with its status; unknown routes answer 404.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch let error as HTTPError {
            if error.status == .notFound {
                return APIError(.notFound, "no route \(request.method) \(request.uri.path)").response
            }
            if error.status == .contentTooLarge {
                return APIError(.contentTooLarge, "the request body is over the limit of 1 MiB").response
            }
            return APIError(error.status, error.body ?? error.status.reasonPhrase).response
        } catch {
            // The details (store addresses, paths) go to the log, not to whoever asked.
            logger.error("\(request.method) \(request.uri.path) failed: \(error)")
            return APIError(.internalServerError, "the store could not answer; the server log has the details").response
        }
    }
}

/// The access rules of section 11.
///
/// With a token every route but `/healthz` wants `Authorization: Bearer <token>` (the page at `/`
/// answers 401 too, with itself as the body: it holds no data and asks for the token). Without a
/// token the listener is on loopback, and the `Host` header must name a loopback address too, so
/// a page of another site cannot reach it by pointing its own name at 127.0.0.1. Whatever the
/// token, nothing changes on a request a page of another site could forge: browsers say where a
/// request comes from (`Sec-Fetch-Site`, and `Origin` on every POST), and anything but this
/// origin is refused; no CORS header is ever sent. Clients that are not browsers send neither
/// and may post JSON with any content type (`curl -d`, `urllib`).
struct AccessMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let path = request.uri.path
        if path == "/healthz" { return try await next(request, context) }
        if let token {
            guard Self.bearerMatches(request.headers[.authorization] ?? "", token) else {
                if request.method == .get && path == "/" {
                    return Response(
                        status: .unauthorized, headers: API.pageHeaders,
                        body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
                }
                var response = APIError(.unauthorized, "this pq asks for a token: send Authorization: Bearer <token>")
                    .response
                response.headers[.wwwAuthenticate] = "Bearer"
                return response
            }
        } else {
            let host = Self.hostName(request.head.authority ?? "")
            guard HTTPOptions.isLoopback(host) else {
                throw APIError(
                    .forbidden,
                    "Host '\(host)' is not a loopback name: without --http-token pq answers only requests addressed to 127.0.0.1, ::1 or localhost"
                )
            }
        }
        // A browser says where a request comes from: only the page itself (or the user, typing
        // the address) may use the API; another site's page, even on another port of this
        // machine, may only navigate to the dashboard.
        if let site = request.headers[.secFetchSite], site != "same-origin", site != "none" {
            let navigation = request.method == .get && path == "/" && request.headers[.secFetchMode] == "navigate"
            guard navigation else { throw APIError(.forbidden, "cross-site request refused (Sec-Fetch-Site: \(site))") }
        }
        if request.method == .post {
            if let origin = request.headers[.origin] {
                guard Self.sameOrigin(origin, authority: request.head.authority ?? "") else {
                    throw APIError(.forbidden, "cross-origin request refused (Origin: \(origin))")
                }
            }
        }
        return try await next(request, context)
    }

    /// The host part of a `Host` header: `127.0.0.1:5555` → `127.0.0.1`, `[::1]:80` → `::1`.
    static func hostName(_ header: String) -> String {
        if header.hasPrefix("["), let close = header.firstIndex(of: "]") {
            return String(header[header.index(after: header.startIndex)..<close])
        }
        if let colon = header.lastIndex(of: ":"), !header[..<colon].contains(":") { return String(header[..<colon]) }
        return header
    }

    /// Whether `Origin` names this server as the request addressed it: `http://` and the same
    /// host and port, compared exactly (case aside).
    static func sameOrigin(_ origin: String, authority: String) -> Bool {
        let o = origin.lowercased()
        guard o.hasPrefix("http://"), !authority.isEmpty else { return false }
        func normal(_ hostPort: Substring) -> Substring { hostPort.hasSuffix(":80") ? hostPort.dropLast(3) : hostPort }
        return normal(o.dropFirst(7)) == normal(Substring(authority.lowercased()))
    }

    /// `Authorization: Bearer <token>`, the scheme in any case (RFC 7235), the token compared in
    /// constant time.
    static func bearerMatches(_ header: String, _ token: String) -> Bool {
        guard header.count > 7, header.prefix(7).lowercased() == "bearer " else {
            _ = constantTimeEqual(header, token)
            return false
        }
        return constantTimeEqual(String(header.dropFirst(7)), token)
    }

    /// Compares without leaking where the first difference is.
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        var diff = UInt8(truncatingIfNeeded: x.count ^ y.count)
        for i in 0..<max(x.count, y.count) {
            diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
        }
        return diff == 0
    }
}

/// A refused request: its status and the message of its `{"error": ...}` body.
struct APIError: Error {
    let status: HTTPResponse.Status
    let message: String

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    var response: Response {
        API.json(JSONValue.object([("error", .string(message))]).jsonText, status: status)
    }
}

extension HTTPField.Name {
    static let secFetchSite = Self("Sec-Fetch-Site")!
    static let secFetchMode = Self("Sec-Fetch-Mode")!
}
