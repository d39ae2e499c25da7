'use strict';
// wsgaps built-in target: the Node.js `ws` package (version pinned in package-lock.json).
//
// Only ws's public API with its defaults, except where target.toml [settings] says otherwise:
//   /echo          every message back with the same opcode (text stays text, binary binary)
//   /subprotocols  like /echo, with handleProtocols choosing from SUPPORTED
//   /chat          the seed's chat: ack to the sender, fan-out to the other members of a room
// Routing several WebSocketServers (noServer mode) on one http.Server is the pattern of ws's
// README ("Multiple servers sharing a single HTTP/S server").  No timers of our own: ws has
// no server heartbeat, so none is added here (target.toml declares it absent).
//
// Usage: node server.js --port N [--host 127.0.0.1]

const http = require('node:http');
const { WebSocketServer } = require('ws');

const SUPPORTED = ['wsgaps.v2', 'wsgaps.v1'];

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const port = Number(option('port', '8080'));
const host = option('host', '127.0.0.1');

function echo(ws) {
  ws.on('error', (err) => console.error(`echo: ${err.message}`));
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
}

const echoServer = new WebSocketServer({ noServer: true });
echoServer.on('connection', echo);

const subprotocolServer = new WebSocketServer({
  noServer: true,
  // ws calls this with the Set of offered protocols; returning false sends no header.
  handleProtocols: (offered) => SUPPORTED.find((p) => offered.has(p)) || false,
});
subprotocolServer.on('connection', echo);

const chatServer = new WebSocketServer({ noServer: true });

function chatError(ws, code, message) {
  ws.send(JSON.stringify({ error: { code, message } }));
}

chatServer.on('connection', (ws) => {
  ws.on('error', (err) => console.error(`chat: ${err.message}`));
  ws.on('message', (data, isBinary) => {
    let msg;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      return chatError(ws, 'invalid_json', 'message is not valid JSON');
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
      return chatError(ws, 'invalid_message', 'message must be a JSON object');
    }
    for (const key of ['user', 'message', 'room']) {
      if (typeof msg[key] !== 'string' || msg[key] === '') {
        return chatError(ws, 'missing_field', `field "${key}" is required (a non-empty string)`);
      }
    }
    // Membership is the room of the client's latest message, kept on ws's own client object;
    // fan-out is a loop over ws's own client set (WebSocketServer#clients).
    ws.room = msg.room;
    ws.send(JSON.stringify({
      status: 'received', user: msg.user, message: msg.message, room: msg.room,
      time: new Date().toISOString(),
    }));
    const out = JSON.stringify({ user: msg.user, message: msg.message, room: msg.room });
    for (const peer of chatServer.clients) {
      if (peer !== ws && peer.room === msg.room && peer.readyState === peer.OPEN) peer.send(out);
    }
  });
});

const routes = { '/echo': echoServer, '/subprotocols': subprotocolServer, '/chat': chatServer };

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket endpoints: /echo, /subprotocols, /chat\n');
});

server.on('upgrade', (req, socket, head) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  const wss = routes[pathname];
  if (!wss) {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
});

server.listen(port, host, () => {
  console.log(`node-ws (ws ${require('ws/package.json').version}) on ${host}:${port}`);
});

// SIGTERM: exit at once.  ws closes nothing by itself here: WebSocketServer#close() leaves
// existing connections open (lib/websocket-server.js WebSocketServer#close), so clients see
// the TCP end.
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
