// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "SessionHost",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "FastCGI", targets: ["FastCGI"]),
        .library(name: "WebConfiguration", targets: ["WebConfiguration"]),
        .library(name: "SessionState", targets: ["SessionState"]),
        .library(name: "SessionStateSerialization", targets: ["SessionStateSerialization"]),
        .library(name: "StateServerSessionStore", targets: ["StateServerSessionStore"]),
        .library(name: "SQLSessionStore", targets: ["SQLSessionStore"]),
        .library(name: "RedisSessionStore", targets: ["RedisSessionStore"]),
        .library(name: "SessionStateTesting", targets: ["SessionStateTesting"]),
        .library(name: "SessionHost", targets: ["SessionHost"]),
        .library(name: "SessionHostCLI", targets: ["SessionHostCLI"]),
        .library(name: "SessionHostTesting", targets: ["SessionHostTesting"]),
        .executable(name: "session-host", targets: ["session-host"]),
        .executable(name: "session-state-server", targets: ["SessionStateServerCommand"]),
        .executable(name: "demo", targets: ["Demo"]),
        .executable(name: "session-probe", targets: ["SessionProbe"]),
        .executable(name: "bench-hello", targets: ["BenchHello"]),
        .executable(name: "bench-config", targets: ["BenchConfigLookup"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CFastCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        // Linux's epoll and eventfd (glibc headers; nothing to link).
        .systemLibrary(name: "CEpoll"),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // No pkgConfig: hiredis.pc adds -D_FILE_OFFSET_BITS=64, which SwiftPM refuses; the headers
        // are in /usr/include/hiredis.
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),

        // A pthread-mutex lock the thread sanitizer can see, shared by the modules below. Knows
        // nothing of anything else.
        .target(name: "Locking", swiftSettings: strict),

        // What the status pages of the worker and the state server share: Prometheus's text
        // exposition format and their JSON encoding. Knows nothing of anything else.
        .target(name: "StatusExposition", swiftSettings: strict),

        // The FastCGI transport: sockets, worker threads, records. Knows nothing of HTTP routing,
        // configuration or sessions.
        .target(
            name: "FastCGI",
            dependencies: [
                "CFastCGI",
                "CEpoll",
                "Locking",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The IIS configuration hierarchy (machine.config, web.config, applicationHost.config,
        // per-directory web.config, <location>, locks) read with libxml2. Knows nothing of
        // FastCGI or HTTP.
        .target(
            name: "WebConfiguration",
            dependencies: [
                "CLibXML2",
                "Locking",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Session state of both domains without HTTP: IDs, values, the store-provider protocol
        // and store factories, the InProc store, locking and the release rules. A leaf: knows
        // nothing of configuration, FastCGI, HTTP or XML (the host maps settings onto it).
        .target(
            name: "SessionState",
            dependencies: [
                "Locking",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The contract every session-state store keeps, as checks a store's tests run (the
        // conformance suite). Depends on SessionState and swift-testing only.
        .target(name: "SessionStateTesting", dependencies: ["SessionState"], swiftSettings: strict),
        // ASP.NET's serialized form of a session (SessionStateUtility, SessionStateItemCollection,
        // AltSerialization, optional raw Deflate), shared by the out-of-process stores. Knows
        // nothing of stores, configuration, HTTP or XML.
        .target(
            name: "SessionStateSerialization",
            dependencies: ["SessionState", "CZlib"],
            swiftSettings: strict
        ),
        // ASP.NET's state server (aspnet_state's protocol) on SwiftNIO: the session table with
        // locks and sliding expiry, the request framing, the connections. Items are opaque bytes:
        // knows nothing of their format, of SessionHost's worker, configuration or FastCGI.
        .target(
            name: "SessionStateServer",
            dependencies: [
                "Locking",
                "StatusExposition",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // mode="StateServer" in the worker: a client of session-state-server or aspnet_state with
        // blocking calls and kept connections. Depends on the store seam and the serialized form
        // only (and swift-crypto for the key's SHA-256); knows nothing of configuration or HTTP.
        .target(
            name: "StateServerSessionStore",
            dependencies: [
                "SessionState",
                "SessionStateSerialization",
                "Locking",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // mode="SQLServer" on PostgreSQL (libpq) or a SQLite file (libsqlite3): ASP.NET's ASPState
        // schema, blocking calls on the worker thread, a connection pool per database, the
        // expiry sweeper. Depends on the store seam, the serialized form and the two C client
        // libraries only; knows nothing of configuration files, FastCGI or HTTP.
        .target(
            name: "SQLSessionStore",
            dependencies: [
                "SessionState",
                "SessionStateSerialization",
                "Locking",
                "CLibPQ",
                "CSQLite",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // mode="Custom" with Redis (hiredis): the layout and format of Microsoft's
        // RedisSessionStateProvider v5, one Lua script per operation, pub/sub wake-ups. Depends on
        // the store seam, the serialized form and the C client only (swift-crypto for the
        // scripts' SHA-1); knows nothing of configuration files, FastCGI or HTTP.
        .target(
            name: "RedisSessionStore",
            dependencies: [
                "SessionState",
                "SessionStateSerialization",
                "Locking",
                "CHiredis",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SessionStateServerCommand",
            dependencies: [
                "SessionStateServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The host: request/response API, routing, error pages, lifecycle, the access log (whose
        // session hashes use swift-crypto's SHA-256).
        .target(
            name: "SessionHost",
            dependencies: [
                "FastCGI",
                "Locking",
                "StatusExposition",
                "WebConfiguration",
                "SessionState",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // An app's routes served in process for its tests: the host's request path without
        // sockets or nginx, a browser's cookies, a manual session clock.
        .target(
            name: "SessionHostTesting",
            dependencies: [
                "SessionHost",
                "FastCGI",
                "WebConfiguration",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The command line every app built on the library shares (`serve …`).
        .target(
            name: "SessionHostCLI",
            dependencies: [
                "SessionHost",
                "SessionState",
                "WebConfiguration",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The administration tool.
        .executableTarget(
            name: "session-host",
            dependencies: [
                "SessionHost",
                "SessionState",
                "StateServerSessionStore",
                "SQLSessionStore",
                "RedisSessionStore",
                "WebConfiguration",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The demo site's routes and session options, a library so that its tests drive them
        // with SessionHostTesting; `demo` serves them.
        .target(
            name: "DemoSite",
            dependencies: ["SessionHost", "WebConfiguration", "SQLSessionStore"],
            path: "examples/DemoSite",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "Demo",
            dependencies: ["DemoSite", "SessionHostCLI"],
            path: "examples/Demo",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "SessionProbe",
            dependencies: ["SessionHostCLI", "SessionHost", "SessionState", "StateServerSessionStore", "SQLSessionStore", "RedisSessionStore"],
            path: "examples/SessionProbe",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "BenchHello",
            dependencies: ["SessionHostCLI", "SessionHost", "StateServerSessionStore", "SQLSessionStore", "RedisSessionStore"],
            path: "Benchmarks/BenchHello",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "BenchConfigLookup",
            dependencies: ["WebConfiguration", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ConfigLookup",
            swiftSettings: strict
        ),

        // Tests.
        .executableTarget(
            name: "TestWorker",
            dependencies: ["SessionHostCLI", "SessionHost", "SessionState", "WebConfiguration", "Locking"],
            path: "Tests/TestWorker",
            swiftSettings: strict
        ),
        .testTarget(name: "FastCGITests", dependencies: ["FastCGI"], swiftSettings: strict),
        .testTarget(
            name: "SessionStateServerTests",
            dependencies: ["SessionStateServer", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(name: "SQLSessionStoreTests", dependencies: ["SQLSessionStore", "SessionState", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .testTarget(name: "RedisSessionStoreTests", dependencies: ["RedisSessionStore", "SessionState"], swiftSettings: strict),
        .testTarget(name: "SessionStateSerializationTests", dependencies: ["SessionStateSerialization", "SessionState"], swiftSettings: strict),
        .testTarget(name: "SessionStateTests", dependencies: ["SessionState", "SessionStateTesting", "Locking", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .testTarget(
            name: "WebConfigurationTests",
            dependencies: ["WebConfiguration", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "SessionHostTests",
            dependencies: ["SessionHost", "SessionHostTesting", "DemoSite", "SQLSessionStore", "Locking", .product(name: "HTTPTypes", package: "swift-http-types")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "TestWorker", "SessionProbe", "SessionStateServerCommand", "session-host", "FastCGI", "Locking",
                "StateServerSessionStore", "SQLSessionStore", "RedisSessionStore", "SessionStateSerialization", "SessionStateTesting", "SessionState", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
    ]
)
