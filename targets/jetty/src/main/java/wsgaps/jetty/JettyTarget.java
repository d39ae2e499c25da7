// wsgaps built-in target: Jetty 12.1's own WebSocket API (org.eclipse.jetty.websocket.api and
// .server, no Jakarta/EE layer), versions pinned in pom.xml.
//
// Jetty's defaults everywhere, except where target.toml [settings] says otherwise:
//   /echo          every message back with the same opcode (text stays text, binary binary)
//   /subprotocols  like /echo; the WebSocketCreator picks the first of SUPPORTED that the
//                  client offered (ServerUpgradeRequest.hasSubProtocol) and accepts it with
//                  ServerUpgradeResponse.setAcceptedSubProtocol; nothing offered, nothing set
//   /chat          the contract's chat: acknowledgement and structured errors only.  No room
//                  fan-out: Jetty has no rooms (target.toml absent.rooms)
//   /broadcast     every message to every open session of this endpoint, the sender
//                  included: a loop over Jetty's own session set
//                  (ServerWebSocketContainer.getOpenSessions, kept by Jetty's SessionTracker),
//                  keeping the sessions whose upgrade path is /broadcast
//   /secure        echo behind a token check in the WebSocketCreator: without
//                  "Authorization: Bearer <token>" it writes 401 and returns no endpoint
//   /origin        echo behind a same-origin rule in the WebSocketCreator (403 otherwise);
//                  Jetty's own API has no origin setting
//   /connections   (HTTP GET) Jetty's own session set, getOpenSessions, as the contract's JSON
// The listeners demand one frame at a time (Session.Listener without AutoDemanding) and ask
// for the next only once the echo of the last one has been sent, so a fast client meets
// Jetty's back-pressure rather than an unbounded queue of ours.  No timers of our own: Jetty
// sends no Pings (target.toml absent.heartbeat).
//
// Recovery (gap 11): with --upstream URL, Jetty's own WebSocketClient dials that URL once.
// It has no reconnection, so nothing here dials again (target.toml absent.recovery).
//
// Usage: java -cp ... wsgaps.jetty.JettyTarget --port N [--host 127.0.0.1] [--upstream URL]
//        java -cp ... wsgaps.jetty.JettyTarget --version
package wsgaps.jetty;

import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.http.HttpStatus;
import org.eclipse.jetty.io.Content;
import org.eclipse.jetty.server.Handler;
import org.eclipse.jetty.server.Request;
import org.eclipse.jetty.server.Response;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.NetworkConnectionLimit;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.ContextHandler;
import org.eclipse.jetty.util.Jetty;
import org.eclipse.jetty.util.ajax.JSON;
import org.eclipse.jetty.websocket.api.Callback;
import org.eclipse.jetty.websocket.api.Session;
import org.eclipse.jetty.websocket.client.WebSocketClient;
import org.eclipse.jetty.websocket.server.ServerWebSocketContainer;
import org.eclipse.jetty.websocket.server.WebSocketUpgradeHandler;

public final class JettyTarget
{
    static final List<String> SUPPORTED = List.of("wsgaps.v2", "wsgaps.v1");
    // Raised from Jetty's 64 KiB default (WebSocketConstants.DEFAULT_MAX_TEXT_MESSAGE_SIZE,
    // DEFAULT_MAX_BINARY_MESSAGE_SIZE) so that message-types.large's 1 MiB fits; target.toml
    // settings.max_message_size records it.
    static final long MAX_MESSAGE_SIZE = 1024 * 1024;
    // Jetty's connection cap: above broadcast.scale's 501 clients, which run here too.
    static final int MAX_CONNECTIONS = 600;
    static final String SECURE_TOKEN = "Bearer wsgaps-jetty-token";
    static final List<String> CHAT_FIELDS = List.of("user", "message", "room");

    private JettyTarget()
    {
    }

    public static void main(String[] args) throws Exception
    {
        Map<String, String> options = options(args);
        if (options.containsKey("version"))
        {
            System.out.println("jetty " + Jetty.VERSION + " on java " + Runtime.version());
            return;
        }
        int port = Integer.parseInt(options.getOrDefault("port", "8080"));
        String host = options.getOrDefault("host", "127.0.0.1");

        Server server = new Server();
        ServerConnector connector = new ServerConnector(server);
        connector.setHost(host);
        connector.setPort(port);
        server.addConnector(connector);
        // Limits (gap 10): Jetty's own connection cap, NetworkConnectionLimit (the
        // network-connection-limit module): at MAX_CONNECTIONS it stops accepting
        // (AbstractConnector.setAccepting(false)) until a connection closes.
        server.addBean(new NetworkConnectionLimit(MAX_CONNECTIONS, server));

        ContextHandler context = new ContextHandler("/");
        WebSocketUpgradeHandler upgrades = WebSocketUpgradeHandler.from(server, context, container ->
        {
            container.setMaxTextMessageSize(MAX_MESSAGE_SIZE);
            container.setMaxBinaryMessageSize(MAX_MESSAGE_SIZE);
            container.addMapping("/echo", (request, response, callback) -> new Echo());
            container.addMapping("/subprotocols", (request, response, callback) ->
            {
                for (String protocol : SUPPORTED)
                {
                    if (request.hasSubProtocol(protocol))
                    {
                        response.setAcceptedSubProtocol(protocol);
                        break;
                    }
                }
                return new Echo();
            });
            container.addMapping("/chat", (request, response, callback) -> new Chat());
            container.addMapping("/broadcast", (request, response, callback) -> new Broadcast(container));
            // Refusals through the creator, Jetty's documented hook before the upgrade
            // (WebSocketCreator: send a response, complete the callback, return null).
            container.addMapping("/secure", (request, response, callback) ->
            {
                if (!SECURE_TOKEN.equals(request.getHeaders().get(HttpHeader.AUTHORIZATION)))
                {
                    Response.writeError(request, response, callback, HttpStatus.UNAUTHORIZED_401);
                    return null;
                }
                return new Echo();
            });
            container.addMapping("/origin", (request, response, callback) ->
            {
                // Jetty's own API has no origin setting: the same-origin rule is this line.
                String origin = request.getHeaders().get(HttpHeader.ORIGIN);
                String own = "http://" + request.getHeaders().get(HttpHeader.HOST);
                if (origin != null && !origin.equalsIgnoreCase(own))
                {
                    Response.writeError(request, response, callback, HttpStatus.FORBIDDEN_403);
                    return null;
                }
                return new Echo();
            });
        });
        // Connection state (gap 4): what is not an upgrade goes on to this handler, which
        // answers GET /connections from Jetty's own session set (getOpenSessions, kept by
        // SessionTracker: added on open, dropped on close) and what each Session keeps: its
        // upgrade request (path, headers), remote address and isOpen.  Jetty keeps no message
        // counts or times per session, so the rows have none.
        upgrades.setHandler(new Handler.Abstract()
        {
            @Override
            public boolean handle(Request request, Response response, org.eclipse.jetty.util.Callback callback)
            {
                if (!"/connections".equals(Request.getPathInContext(request)))
                    return false;
                List<Object> rows = new ArrayList<>();
                for (Session session : upgrades.getServerWebSocketContainer().getOpenSessions())
                {
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("state", session.isOpen() ? "OPEN" : "CLOSED");
                    row.put("path", session.getUpgradeRequest().getRequestURI().getPath());
                    row.put("client", session.getUpgradeRequest().getHeader("X-Wsgaps-Client"));
                    row.put("remote", String.valueOf(session.getRemoteSocketAddress()));
                    rows.add(row);
                }
                response.getHeaders().put(HttpHeader.CONTENT_TYPE, "application/json");
                Content.Sink.write(response, true, new JSON().toJSON(Map.of("connections", rows)), callback);
                return true;
            }
        });
        context.setHandler(upgrades);
        server.setHandler(context);
        // Jetty's own shutdown hook stops the server on SIGTERM, gracefully for up to 3 s:
        // with a stop timeout, Server.doStop shuts its Graceful components down first, and
        // the WebSocket container's SessionTracker.shutdown closes every open session with
        // 1001 (target.toml settings.stop_at_shutdown, stop_timeout).
        server.setStopAtShutdown(true);
        server.setStopTimeout(3000);
        server.start();
        System.out.println("jetty " + Jetty.VERSION + " on " + host + ":" + connector.getLocalPort());

        String upstream = options.get("upstream");
        if (upstream != null && !upstream.isEmpty())
            dialUpstream(upstream);
        server.join();
    }

    private static Map<String, String> options(String[] args)
    {
        Map<String, String> options = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++)
        {
            if (!args[i].startsWith("--"))
                throw new IllegalArgumentException("unexpected argument: " + args[i]);
            String name = args[i].substring(2);
            if (name.equals("version"))
                options.put(name, "");
            else if (i + 1 < args.length)
                options.put(name, args[++i]);
            else
                throw new IllegalArgumentException("--" + name + " needs a value");
        }
        return options;
    }

    // One dial through Jetty's WebSocketClient; the outcome is logged, nothing dials again.
    private static void dialUpstream(String url) throws Exception
    {
        WebSocketClient client = new WebSocketClient();
        client.setStopAtShutdown(true);
        client.start();
        client.connect(new Upstream(), URI.create(url)).whenComplete((session, failure) ->
        {
            if (failure != null)
                System.err.println("upstream: dial failed: " + failure);
            else
                System.out.println("upstream: connected");
        });
    }

    // Listener classes are public: Jetty binds their methods through MethodHandles.
    public static final class Upstream implements Session.Listener.AutoDemanding
    {
        @Override
        public void onWebSocketClose(int statusCode, String reason)
        {
            System.out.println("upstream: closed (" + statusCode + ")");
        }

        @Override
        public void onWebSocketError(Throwable cause)
        {
            System.err.println("upstream: " + cause);
        }
    }

    /** A listener that reads one message at a time: the next only after the answer was sent. */
    public abstract static class OneAtATime implements Session.Listener
    {
        protected volatile Session session;

        @Override
        public void onWebSocketOpen(Session session)
        {
            this.session = session;
            session.demand();
        }

        @Override
        public void onWebSocketError(Throwable cause)
        {
            System.err.println(getClass().getSimpleName() + ": " + cause);
        }

        /** A send's callback that demands the next frame once the send has succeeded. */
        protected Callback demandNext()
        {
            return Callback.from(() -> session.demand(), failure -> System.err.println(getClass().getSimpleName() + ": send failed: " + failure));
        }
    }

    public static final class Echo extends OneAtATime
    {
        @Override
        public void onWebSocketText(String message)
        {
            session.sendText(message, demandNext());
        }

        @Override
        public void onWebSocketBinary(ByteBuffer payload, Callback callback)
        {
            // The payload stays valid until ``callback`` completes: after our send of it.
            session.sendBinary(payload, Callback.from(() ->
            {
                callback.succeed();
                session.demand();
            }, callback::fail));
        }
    }

    public static final class Chat extends OneAtATime
    {
        @Override
        public void onWebSocketText(String message)
        {
            session.sendText(reply(message), demandNext());
        }

        @Override
        public void onWebSocketBinary(ByteBuffer payload, Callback callback)
        {
            String text;
            try
            {
                // Bytes that are not UTF-8 are not JSON (as json.loads(bytes) raises in
                // gaps/contract.py chat_error).
                text = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(payload).toString();
            }
            catch (CharacterCodingException e)
            {
                text = null;
            }
            callback.succeed();
            String answer = text == null ? error("invalid_json", "message is not valid JSON") : reply(text);
            session.sendText(answer, demandNext());
        }

        // The contract's chat format, mirroring gaps/contract.py (chat_error / chat_reply):
        // in {"user","message","room"}, each a string; out the acknowledgement
        // {"status":"received","user","message","room"}; bad input {"error":{"code","message"}}.
        static String reply(String message)
        {
            Object data;
            try
            {
                // Jetty's parser stops after the first value: what follows it, past
                // whitespace, makes the message invalid JSON, as for json.loads.
                JSON.StringSource source = new JSON.StringSource(message);
                data = new JSON().parse(source);
                while (source.hasNext() && Character.isWhitespace(source.peek()))
                    source.next();
                if (source.hasNext())
                    return error("invalid_json", "message is not valid JSON");
            }
            catch (RuntimeException e)
            {
                return error("invalid_json", "message is not valid JSON");
            }
            if (!(data instanceof Map<?, ?> map))
                return error("invalid_message", "message must be a JSON object");
            List<String> missing = new ArrayList<>();
            for (String field : CHAT_FIELDS)
            {
                if (!(map.get(field) instanceof String))
                    missing.add(field);
            }
            if (!missing.isEmpty())
                return error("missing_field", "missing or non-string field(s): " + String.join(", ", missing));
            Map<String, Object> ack = new LinkedHashMap<>();
            ack.put("status", "received");
            for (String field : CHAT_FIELDS)
                ack.put(field, map.get(field));
            return new JSON().toJSON(ack);
        }

        static String error(String code, String message)
        {
            Map<String, Object> detail = new LinkedHashMap<>();
            detail.put("code", code);
            detail.put("message", message);
            return new JSON().toJSON(Map.of("error", detail));
        }
    }

    public static final class Broadcast extends OneAtATime
    {
        private final ServerWebSocketContainer container;

        Broadcast(ServerWebSocketContainer container)
        {
            this.container = container;
        }

        private List<Session> audience()
        {
            List<Session> audience = new ArrayList<>();
            for (Session other : container.getOpenSessions())
            {
                if (other.isOpen() && "/broadcast".equals(other.getUpgradeRequest().getRequestURI().getPath()))
                    audience.add(other);
            }
            return audience;
        }

        @Override
        public void onWebSocketText(String message)
        {
            for (Session other : audience())
                other.sendText(message, Callback.NOOP);
            session.demand();
        }

        @Override
        public void onWebSocketBinary(ByteBuffer payload, Callback callback)
        {
            // Each receiver gets its own copy: the payload is released with ``callback``.
            byte[] bytes = new byte[payload.remaining()];
            payload.get(bytes);
            callback.succeed();
            for (Session other : audience())
                other.sendBinary(ByteBuffer.wrap(bytes), Callback.NOOP);
            session.demand();
        }
    }
}
