'use strict';
// wsgaps built-in target: the Node.js `ws` package (version pinned in package-lock.json).
//
// Only ws's public API with its defaults, except where target.toml [settings] says otherwise:
//   /echo          every message back with the same opcode (text stays text, binary binary),
//                  with permessage-deflate switched on
//   /subprotocols  like /echo, with handleProtocols choosing from SUPPORTED
//   /chat          the seed's chat: acknowledgement and structured errors only.  No room
//                  fan-out: ws ships no rooms (WebSocketServer keeps one `clients` Set), and a
//                  room registry of our own is not the stack's (target.toml absent.rooms)
//   /broadcast     every message to every open client of this endpoint's WebSocketServer,
//                  the sender included: a loop over the server's own `clients` Set, as in
//                  ws's README ("Server broadcast").  The endpoint has a WebSocketServer of its
//                  own, so that set is exactly its audience (no filter of ours)
//   /secure        like /echo, behind a token check in ws's handshake hook `verifyClient`:
//                  without `Authorization: Bearer <TOKEN>` the callback refuses with 401,
//                  which ws writes instead of the 101 (lib/websocket-server.js abortHandshake)
//   /origin        like /echo, behind the same short same-origin check in `verifyClient`
//                  (ws has no origin setting; `info.origin` is the Origin header): 403
// Routing several WebSocketServers (noServer mode) on one http.Server is the pattern of ws's
// README ("Multiple servers sharing a single HTTP/S server").  No timers of our own: ws has
// no server heartbeat, so none is added here (target.toml declares it absent).
//
// Recovery (gap 11): with --upstream URL, ws's own client (new WebSocket(url)) follows that
// URL.  ws's client does not reconnect, so nothing here does either: a failed dial ('error',
// then 'close') or a dropped connection ('close') ends it.
//
// Usage: node server.js --port N [--host 127.0.0.1] [--upstream URL]

const http = require('node:http');
const { WebSocket, WebSocketServer } = require('ws');

const SUPPORTED = ['wsgaps.v2', 'wsgaps.v1'];
const TOKEN = 'wsgaps-node-ws-token'; // target.toml endpoints.secure.auth

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const port = Number(option('port', '8080'));
const host = option('host', '127.0.0.1');
const upstream = option('upstream', '');

function echo(ws) {
  ws.on('error', (err) => console.error(`echo: ${err.message}`));
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

// permessage-deflate on for /echo only (gap 7): ws's server ships it off (perMessageDeflate:
// false, lib/websocket-server.js); `true` takes ws's own defaults (lib/permessage-deflate.js:
// threshold 1024 bytes, every RFC 7692 parameter the client offers honoured).
const echoServer = new WebSocketServer({ noServer: true, perMessageDeflate: true });
echoServer.on('connection', echo);

const subprotocolServer = new WebSocketServer({
  noServer: true,
  // ws calls this with the Set of offered protocols; returning false sends no header.
  handleProtocols: (offered) => SUPPORTED.find((p) => offered.has(p)) || false,
});
subprotocolServer.on('connection', echo);

const chatServer = new WebSocketServer({ noServer: true });

const secureServer = new WebSocketServer({
  noServer: true,
  verifyClient: (info, done) => {
    if (info.req.headers.authorization === `Bearer ${TOKEN}`) done(true);
    else done(false, 401, 'a valid token is required');
  },
});
secureServer.on('connection', echo);

const originServer = new WebSocketServer({
  noServer: true,
  verifyClient: (info, done) => {
    // No Origin: not a browser, nothing to protect against.  Otherwise http:// and the Host.
    if (info.origin === undefined || info.origin === `http://${info.req.headers.host}`) done(true);
    else done(false, 403, 'cross-origin WebSocket handshakes are refused');
  },
});
originServer.on('connection', echo);

// clientTracking is on by default: ws adds each connection to broadcastServer.clients and
// removes it when it closes (lib/websocket-server.js completeUpgrade).
const broadcastServer = new WebSocketServer({ noServer: true });
broadcastServer.on('connection', (ws) => {
  ws.on('error', (err) => console.error(`broadcast: ${err.message}`));
  ws.on('message', (data, isBinary) => {
    broadcastServer.clients.forEach((client) => {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    });
  });
});

// The contract's chat format, mirroring gaps/contract.py (chat_error / chat_reply) exactly:
// in {"user","message","room"}, each a string (empty strings included); out the
// acknowledgement {"status":"received","user","message","room"}; bad input
// {"error":{"code","message"}} with invalid_json, invalid_message or missing_field.
const CHAT_FIELDS = ['user', 'message', 'room'];
const utf8 = new TextDecoder('utf-8', { fatal: true });

function chatReply(data, isBinary) {
  let msg;
  try {
    // Text arrives UTF-8-validated by ws; binary bytes that are not UTF-8 are invalid JSON,
    // as json.loads(bytes) raises UnicodeDecodeError in the Python adapters.
    msg = JSON.parse(isBinary ? utf8.decode(data) : data.toString('utf8'));
  } catch {
    return { error: { code: 'invalid_json', message: 'message is not valid JSON' } };
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return { error: { code: 'invalid_message', message: 'message must be a JSON object' } };
  }
  const missing = CHAT_FIELDS.filter(
    (key) => !Object.hasOwn(msg, key) || typeof msg[key] !== 'string');
  if (missing.length) {
    return {
      error: { code: 'missing_field', message: `missing or non-string field(s): ${missing.join(', ')}` },
    };
  }
  return { status: 'received', user: msg.user, message: msg.message, room: msg.room };
}

chatServer.on('connection', (ws) => {
  ws.on('error', (err) => console.error(`chat: ${err.message}`));
  ws.on('message', (data, isBinary) => ws.send(JSON.stringify(chatReply(data, isBinary))));
});

const routes = {
  '/echo': echoServer,
  '/subprotocols': subprotocolServer,
  '/chat': chatServer,
  '/broadcast': broadcastServer,
  '/secure': secureServer,
  '/origin': originServer,
};

// Connection state (gap 4): GET /connections lists ws's own registry, each path's
// WebSocketServer#clients (clientTracking, on by default: lib/websocket-server.js adds a
// client on upgrade and deletes it on its 'close' event), with each WebSocket's readyState.
// ws keeps neither the handshake request nor counts on a WebSocket, so the upgrade callback
// notes the X-Wsgaps-Client header and the peer's address on it (ws.wsgaps), as the ws README
// notes ws.isAlive; no message counts (ws keeps none).
const STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];

function listing() {
  const connections = [];
  for (const [path, wss] of Object.entries(routes)) {
    for (const ws of wss.clients) {
      connections.push({ state: STATES[ws.readyState], path, ...ws.wsgaps });
    }
  }
  return JSON.stringify({ connections });
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && new URL(req.url, 'http://localhost').pathname === '/connections') {
    const body = listing();
    res.writeHead(200, { 'Content-Type': 'application/json',
                         'Content-Length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket endpoints: /echo, /subprotocols, /chat, /broadcast, /secure, /origin\n');
});

server.on('upgrade', (req, socket, head) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  const wss = routes[pathname];
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.wsgaps = { client: req.headers['x-wsgaps-client'] || null,
                  remote: `${req.socket.remoteAddress}:${req.socket.remotePort}` };
    wss.emit('connection', ws, req);
  });
});

server.listen(port, host, () => {
  console.log(`node-ws (ws ${require('ws/package.json').version}) on ${host}:${port}`);
});

// One dial with ws's client; its events are logged, nothing dials again.
if (upstream) {
  const client = new WebSocket(upstream);
  client.on('open', () => console.log('upstream: connected'));
  client.on('error', (err) => console.error(`upstream: ${err.message}`));
  client.on('close', (code) => console.log(`upstream: closed (${code})`));
}

// Shutdown (gap 4): ws's WebSocketServer#close() stops new connections but leaves existing
// ones open (ws 8.23.0 lib/websocket-server.js WebSocketServer#close: "Stop the server from
// accepting new connections and emit the 'close' event when all existing connections are
// closed"), so the glue closes each connection of ws's own client sets with 1001 (a loop over
// the stack's set, recorded in target.toml settings), then closes every WebSocketServer and
// the HTTP server, whose callback comes once the last socket has ended.
function shutdown() {
  for (const wss of Object.values(routes)) {
    for (const ws of wss.clients) ws.close(1001, 'server shutting down');
    wss.close();
  }
  server.close(() => process.exit(0));
}
for (const sig of ['SIGTERM', 'SIGINT']) process.once(sig, shutdown);
