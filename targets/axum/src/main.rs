//! wsgaps built-in target: an axum app (axum pinned in Cargo.toml, every crate in Cargo.lock).
//!
//! Only axum's public API, as its docs show it (axum::extract::ws module docs): routes taking
//! the `WebSocketUpgrade` extractor with `routing::any`, `on_upgrade` handing each connection
//! to an async handler, and that handler reading `WebSocket::recv` and writing
//! `WebSocket::send`.  axum's defaults everywhere except the subprotocol list on
//! /subprotocols (target.toml [settings]):
//!
//!   /echo          every data message back with the same opcode (text stays text, binary
//!                  binary); Ping, Pong and Close are axum's and tungstenite's business
//!                  (a Pong and the Close reply are queued by tungstenite while reading)
//!   /subprotocols  like /echo, after `WebSocketUpgrade::protocols(["wsgaps.v2", "wsgaps.v1"])`
//!   /chat          the seed's chat: an acknowledgement to the sender, the contract's error
//!                  shape for bad input (axum has no error model for WebSocket messages, so
//!                  the adapter writes it: target.toml endpoints.chat.adapter_errors).  No
//!                  fan-out: axum gives a handler its own connection only (absent.rooms)
//!   /secure        like /echo, behind a token check in an axum middleware
//!                  (`middleware::from_fn` on the route): without `Authorization: Bearer
//!                  <TOKEN>` it answers 401 and the request never reaches the extractor, so
//!                  no 101 is sent
//!   /origin        like /echo, behind a short same-origin check in the same kind of
//!                  middleware (axum has no origin setting: WebSocketUpgrade reads no Origin
//!                  header): 403 for an Origin other than http:// and the Host, none let through
//!
//! No broadcast, rooms, heartbeat or reconnecting client of our own: axum ships none of them
//! (target.toml [absent]).  Shutdown is axum's own: `serve(...).with_graceful_shutdown` on
//! SIGTERM; axum keeps no registry of upgraded connections, so nothing lists them.  When a read fails (a protocol error, invalid
//! UTF-8, a message over the limit) the handler returns, as in axum's example, and dropping the
//! `WebSocket` closes the TCP connection: tungstenite sends no Close frame for an error it
//! returns, and writing one would be frame handling axum does not do.
//!
//! Usage: axum-wsgaps --port N [--host 127.0.0.1]; `axum-wsgaps --version` prints the versions
//! of axum and the crates under it as Cargo.lock pins them (the build is `cargo build
//! --locked`, so these are the versions linked).

use std::net::SocketAddr;

use axum::{
    extract::{
        ws::{Message, WebSocket, WebSocketUpgrade},
        Request,
    },
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::any,
    Router,
};
use serde_json::{json, Map, Value};

const SUPPORTED: [&str; 2] = ["wsgaps.v2", "wsgaps.v1"];
const CHAT_FIELDS: [&str; 3] = ["user", "message", "room"];
const TOKEN: &str = "wsgaps-axum-token"; // target.toml endpoints.secure.auth
const LOCK: &str = include_str!("../Cargo.lock");

fn locked_version(name: &str) -> &'static str {
    let wanted = format!("name = \"{name}\"");
    let mut lines = LOCK.lines();
    while let Some(line) = lines.next() {
        if line == wanted {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return version.trim_end_matches('"');
            }
        }
    }
    "unknown"
}

fn version_line() -> String {
    format!(
        "axum {} (tokio-tungstenite {}, tungstenite {}, hyper {}, tokio {})",
        locked_version("axum"),
        locked_version("tokio-tungstenite"),
        locked_version("tungstenite"),
        locked_version("hyper"),
        locked_version("tokio"),
    )
}

fn option(args: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    args.iter()
        .position(|a| *a == flag)
        .and_then(|at| args.get(at + 1))
        .cloned()
}

async fn echo_route(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|socket| echo(socket, "echo"))
}

async fn subprotocols_route(ws: WebSocketUpgrade) -> Response {
    // axum picks the first of SUPPORTED the client offered, or none (no header).
    ws.protocols(SUPPORTED)
        .on_upgrade(|socket| echo(socket, "subprotocols"))
}

async fn chat_route(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(chat)
}

/// Handshake authentication: an axum middleware that answers 401 unless the request carries
/// the bearer token; only then does the route's WebSocketUpgrade extractor run.
async fn require_token(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    let given = request.headers().get(header::AUTHORIZATION);
    if given.is_some_and(|value| value.as_bytes() == expected.as_bytes()) {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "a valid token is required\n").into_response()
    }
}

/// Same origin: no Origin (not a browser) or exactly http:// and the Host passes; anything
/// else gets 403 before the upgrade.
async fn same_origin(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let allowed = match headers.get(header::ORIGIN) {
        None => true,
        Some(origin) => headers.get(header::HOST).is_some_and(|host| {
            origin.as_bytes().strip_prefix(b"http://") == Some(host.as_bytes())
        }),
    };
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket handshakes are refused\n",
        )
            .into_response()
    }
}

/// Every data message back unchanged, same opcode, until the connection ends.
async fn echo(mut socket: WebSocket, route: &'static str) {
    while let Some(message) = socket.recv().await {
        let reply = match message {
            Ok(Message::Text(text)) => Message::Text(text),
            Ok(Message::Binary(data)) => Message::Binary(data),
            // Control frames: tungstenite queues the Pong (and the Close reply) itself and
            // writes it on the next read, so the loop only has to keep reading.
            Ok(_) => continue,
            Err(err) => {
                eprintln!("{route}: read ended: {err}");
                return;
            }
        };
        if let Err(err) = socket.send(reply).await {
            eprintln!("{route}: write failed: {err}");
            return;
        }
    }
}

/// The contract's chat format, mirroring gaps/contract.py (chat_error / chat_reply): in
/// {"user","message","room"}, each a string; out {"status":"received","user","message","room"};
/// bad input {"error":{"code","message"}} with invalid_json, invalid_message or missing_field.
fn chat_reply(data: &[u8]) -> Value {
    // Binary bytes that are not UTF-8 are not JSON either (serde_json rejects them).
    let parsed: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        Err(_) => {
            return json!({"error": {"code": "invalid_json", "message": "message is not valid JSON"}})
        }
    };
    let Value::Object(fields) = parsed else {
        return json!({"error": {"code": "invalid_message",
                                "message": "message must be a JSON object"}});
    };
    let missing: Vec<&str> = CHAT_FIELDS
        .into_iter()
        .filter(|name| !fields.get(*name).is_some_and(Value::is_string))
        .collect();
    if !missing.is_empty() {
        return json!({"error": {"code": "missing_field",
                                "message": format!("missing or non-string field(s): {}",
                                                   missing.join(", "))}});
    }
    let mut ack = Map::new();
    ack.insert("status".into(), Value::from("received"));
    for name in CHAT_FIELDS {
        ack.insert(name.into(), fields[name].clone());
    }
    Value::Object(ack)
}

async fn chat(mut socket: WebSocket) {
    while let Some(message) = socket.recv().await {
        let reply = match message {
            Ok(Message::Text(text)) => chat_reply(text.as_bytes()),
            Ok(Message::Binary(data)) => chat_reply(&data),
            Ok(_) => continue,
            Err(err) => {
                eprintln!("chat: read ended: {err}");
                return;
            }
        };
        if let Err(err) = socket.send(Message::text(reply.to_string())).await {
            eprintln!("chat: write failed: {err}");
            return;
        }
    }
}

/// Completes on SIGTERM or SIGINT (tokio::signal, the signal future axum's shutdown example
/// waits for).
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        eprintln!("cannot install the SIGTERM/SIGINT handlers; graceful shutdown is off");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--version") {
        println!("{}", version_line());
        return;
    }
    let port: u16 = match option(&args, "port").map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: axum-wsgaps --port N [--host 127.0.0.1] | --version");
            std::process::exit(2);
        }
    };
    let host = option(&args, "host").unwrap_or_else(|| "127.0.0.1".into());
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("--host {host}: {err}");
            std::process::exit(2);
        }
    };

    // routing::any, as axum's WebSocketUpgrade docs say: the extractor itself refuses a
    // method other than GET on HTTP/1.1 (405).
    let app = Router::new()
        .route("/echo", any(echo_route))
        .route("/subprotocols", any(subprotocols_route))
        .route("/chat", any(chat_route))
        .route(
            "/secure",
            any(echo_route).layer(middleware::from_fn(require_token)),
        )
        .route(
            "/origin",
            any(echo_route).layer(middleware::from_fn(same_origin)),
        );

    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("cannot listen on {addr}: {err}");
            std::process::exit(1);
        }
    };
    println!("{} on {addr}", version_line());
    // axum's documented graceful shutdown (axum 0.8.9 src/serve/mod.rs
    // Serve::with_graceful_shutdown), on SIGTERM as the harness stops a target.
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(terminated())
        .await
    {
        eprintln!("server ended: {err}");
        std::process::exit(1);
    }
}
