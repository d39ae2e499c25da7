// wsgaps built-in target: a GoFr app (gofr.dev, version pinned in go.mod and go.sum).
//
// Only GoFr's public API, as its docs show it (docs/advanced-guide/websocket):
// app.WebSocket routes whose handlers Bind the next message and return the answer, and
// one upgrader built with websocket.NewWSUpgrader options, installed with
// app.OverrideWebsocketUpgrader.  GoFr writes every handler result back as a text message
// (pkg/gofr/websocket.go handleWebSocketConnection); the handlers here add nothing to that.
//
//	/echo          the message back (GoFr's handler loop decides the opcode)
//	/subprotocols  the same handler; the upgrader offers wsgaps.v2 and wsgaps.v1
//	/chat          the seed's chat: an acknowledgement to the sender (no fan-out: GoFr gives
//	               handlers no access to other connections), GoFr's own error path on bad input
//	/secure        the echo behind a token check in a middleware registered with
//	               app.UseMiddleware (docs/advanced-guide/middlewares): GoFr registers its own
//	               WebSocket upgrade middleware last, at Run (http_server.go run), so user
//	               middleware answers the handshake before any upgrade; 401 without
//	               "Authorization: Bearer <token>"
//
// No origin endpoint: GoFr's origin setting, websocket.WithCheckOrigin, belongs to the one
// upgrader of the app (OverrideWebsocketUpgrader), so setting it would change /echo too;
// target.toml declares origin-check, and /echo shows GoFr's default.
//
// Recovery (gap 11): with UPSTREAM_URL set, the app registers it as a WebSocket service with
// app.AddWSService(name, url, nil, true, UPSTREAM_RETRY_INTERVAL): GoFr's own inter-service
// client with its reconnection enabled (docs/advanced-guide/websocket "Inter-Service
// WebSocket Communication").  Nothing here reads, writes or watches that connection, and
// no retry of our own is added: what GoFr does after a failed dial or a drop is GoFr's.
//
// `gofr-wsgaps --version` prints the linked versions and exits.
//
// Ports, telemetry and shutdown come from GoFr's config (environment or configs/.env):
// HTTP_PORT, METRICS_PORT, GOFR_TELEMETRY, SHUTDOWN_GRACE_PERIOD.
package main

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"gofr.dev/pkg/gofr"
	gofrHTTP "gofr.dev/pkg/gofr/http"
	"gofr.dev/pkg/gofr/version"
	"gofr.dev/pkg/gofr/websocket"
)

// secureToken is the right token of /secure (target.toml endpoints.secure.auth).
const secureToken = "wsgaps-gofr-token"

// tokenRequired refuses requests for path without the Authorization value want, with 401,
// before GoFr's upgrade middleware runs.
func tokenRequired(path, want string) gofrHTTP.Middleware {
	return func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path && r.Header.Get("Authorization") != want {
				http.Error(w, "a valid token is required", http.StatusUnauthorized)
				return
			}

			inner.ServeHTTP(w, r)
		})
	}
}

// ChatMessage is the seed's chat message.
type ChatMessage struct {
	User    string `json:"user"`
	Message string `json:"message"`
	Room    string `json:"room"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		printVersion()
		return
	}

	app := gofr.New()

	app.OverrideWebsocketUpgrader(websocket.NewWSUpgrader(
		websocket.WithSubprotocols("wsgaps.v2", "wsgaps.v1"),
		websocket.WithCompression(),
	))

	app.WebSocket("/echo", echo)
	app.WebSocket("/subprotocols", echo)
	app.WebSocket("/chat", chat)
	app.WebSocket("/secure", echo)
	app.UseMiddleware(tokenRequired("/secure", "Bearer "+secureToken))

	addUpstream(app)

	app.Run()
}

// addUpstream registers UPSTREAM_URL, when set, as a GoFr WebSocket service with reconnection
// on, retrying every UPSTREAM_RETRY_INTERVAL (a Go duration, default 5s as in GoFr's docs).
func addUpstream(app *gofr.App) {
	url := app.Config.Get("UPSTREAM_URL")
	if url == "" {
		return
	}

	interval, err := time.ParseDuration(app.Config.GetOrDefault("UPSTREAM_RETRY_INTERVAL", "5s"))
	if err != nil {
		app.Logger().Errorf("UPSTREAM_RETRY_INTERVAL: %v", err)
		return
	}

	if err := app.AddWSService("upstream", url, nil, true, interval); err != nil {
		app.Logger().Errorf("AddWSService: %v", err)
	}
}

// printVersion prints the versions linked into this binary (for target.toml's version).
func printVersion() {
	gorilla := "unknown"

	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/gorilla/websocket" {
				gorilla = dep.Version
			}
		}
	}

	fmt.Printf("gofr.dev %s (github.com/gorilla/websocket %s, %s)\n", version.Framework, gorilla, runtime.Version())
}

func echo(ctx *gofr.Context) (any, error) {
	var message string

	if err := ctx.Bind(&message); err != nil {
		return nil, err
	}

	return message, nil
}

func chat(ctx *gofr.Context) (any, error) {
	var msg ChatMessage

	if err := ctx.Bind(&msg); err != nil {
		return nil, err
	}

	var missing []string

	for _, field := range [][2]string{{"user", msg.User}, {"message", msg.Message}, {"room", msg.Room}} {
		if field[1] == "" {
			missing = append(missing, field[0])
		}
	}

	if len(missing) > 0 {
		return nil, gofrHTTP.ErrorMissingParam{Params: missing}
	}

	return map[string]any{
		"status":  "received",
		"user":    msg.User,
		"message": msg.Message,
		"room":    msg.Room,
		"time":    time.Now().UTC().Format(time.RFC3339Nano),
	}, nil
}
