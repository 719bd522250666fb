package vyx

// A worker on several gateways at once (§9.1), the twin of gateway/tests/multi_gateway.rs:
// a session to every gateway of the list and to every address a host name resolves to.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
	"github.com/vyx-dev/vyx/sdk-go/internal/gwtest"
)

// startOn starts a worker serving GET /where with cfg (Connect set by the caller).
func startOn(t *testing.T, cfg Config) (*Worker, *stateLog) {
	t.Helper()
	states := &stateLog{changed: make(chan struct{}, 1)}
	cfg.ID, cfg.OnState = "test:multi", states.add
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Get("/where", func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "here") })
	go func() { _ = w.Start(context.Background()) }()
	t.Cleanup(func() {
		// The scripted gateways do not close after DRAIN: a short grace ends the test.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = w.Shutdown(ctx)
	})
	return w, states
}

// serves checks that c's worker answers a request.
func serves(t *testing.T, c *gwtest.Conn, id uint32) {
	t.Helper()
	c.Send(c.Request(id, "GET /where", "/where", true))
	if r, body := c.Answer(id); r.Status != 200 || string(body) != "here" {
		t.Fatalf("got %d %q", r.Status, body)
	}
}

func addrOf(t *testing.T, g *gwtest.Gateway) netip.AddrPort {
	return netip.MustParseAddrPort(strings.TrimPrefix(strings.TrimPrefix(g.URL(), "wss://"), "ws://"))
}

// waitGateways waits until the worker's live sessions are at want (in any order).
func waitGateways(t *testing.T, w *Worker, want ...netip.AddrPort) {
	t.Helper()
	slices.SortFunc(want, netip.AddrPort.Compare)
	deadline := time.Now().Add(gwtest.Wait)
	for {
		var got []netip.AddrPort
		for _, g := range w.Gateways() {
			got = append(got, g.Address)
		}
		slices.SortFunc(got, netip.AddrPort.Compare)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions at %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dnsTable is a Resolver answering from a table the test changes as it goes.
type dnsTable struct {
	mu    sync.Mutex
	names map[string][]netip.AddrPort
}

func (d *dnsTable) set(name string, addrs ...netip.AddrPort) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.names == nil {
		d.names = map[string][]netip.AddrPort{}
	}
	d.names[name] = addrs
}

func (d *dnsTable) resolve(_ context.Context, host string, _ int) ([]netip.AddrPort, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.names[host]; ok {
		return a, nil
	}
	return nil, os.ErrNotExist
}

// TestTwoGatewaysEachGetASessionAndEitherMayGo: both gateways serve; one dropped, the
// other serves on and the worker stays ready; the dropped one is dialled again.
func TestTwoGatewaysEachGetASessionAndEitherMayGo(t *testing.T) {
	ga, gb := gwtest.New(t), gwtest.New(t)
	w, states := startOn(t, Config{Connect: []string{ga.URL(), gb.URL()}})
	ca, cb := ga.Accept(), gb.Accept()
	ca.Welcome(0)
	cb.Welcome(0)
	serves(t, ca, 1)
	serves(t, cb, 1)

	_ = ca.WS.CloseNow()
	serves(t, cb, 3)
	ca = ga.Accept()
	ca.Welcome(0)
	serves(t, ca, 1)

	_ = cb.WS.CloseNow()
	serves(t, ca, 3)
	cb = gb.Accept()
	cb.Welcome(0)
	serves(t, cb, 1)
	waitGateways(t, w, addrOf(t, ga), addrOf(t, gb))
	// One session was up all along: the worker never stopped being ready.
	if got := states.kinds(); !slices.Equal(got, []string{"connecting", "connected"}) {
		t.Fatalf("worker states %v", got)
	}
}

// TestAHostNameGetsASessionPerAddressAndFollowsDNS: each address of the name gets a
// session whose Host is the name; an address that appears gets one, one that goes is
// drained, and a name that stops resolving keeps what it has.
func TestAHostNameGetsASessionPerAddressAndFollowsDNS(t *testing.T) {
	ga, gb := gwtest.New(t), gwtest.New(t)
	dns := &dnsTable{}
	dns.set("gateways.test", addrOf(t, ga))
	w, _ := startOn(t, Config{Connect: []string{"ws://gateways.test:9"}, Resolver: dns.resolve,
		ResolveInterval: 20 * time.Millisecond})
	ca := ga.Accept()
	if ca.Req.Host != "gateways.test:9" {
		t.Fatalf("Host %q", ca.Req.Host)
	}
	ca.Welcome(0)
	serves(t, ca, 1)

	dns.set("gateways.test", addrOf(t, ga), addrOf(t, gb))
	cb := gb.Accept()
	cb.Welcome(0)
	serves(t, cb, 1)

	dns.set("gateways.test", addrOf(t, gb))
	if f, err := ca.Next(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*frame.Drain); !ok {
		t.Fatalf("want DRAIN on the session whose address went, got %#v", f)
	}
	_ = ca.WS.Close(websocket.StatusNormalClosure, "drained")
	waitGateways(t, w, addrOf(t, gb))

	dns.set("gateways.test")
	serves(t, cb, 3)
	waitGateways(t, w, addrOf(t, gb))
}

// sameHello fails unless c's HELLO is first's (§9.1: every session of a worker says the same).
func sameHello(t *testing.T, c, first *gwtest.Conn) {
	t.Helper()
	if !reflect.DeepEqual(c.Hello, first.Hello) {
		t.Fatalf("HELLO %+v, want the first's %+v", c.Hello, first.Hello)
	}
}

// drained expects DRAIN on c and closes as a gateway does once the worker's streams are done.
func drained(t *testing.T, c *gwtest.Conn) {
	t.Helper()
	if f, err := c.Next(); err != nil {
		t.Fatal(err)
	} else if _, ok := f.(*frame.Drain); !ok {
		t.Fatalf("want DRAIN, got %#v", f)
	}
	_ = c.WS.Close(websocket.StatusNormalClosure, "drained")
}

// TestAWelcomeAskingForThreeConnectionsIsGivenThree (§9.1 "Connections per address", the
// twin of core/tests/host_api.rs's): two more sessions with the same HELLO, each served; an
// extra the gateway drops comes back by itself; an extra's own WELCOME does not change the
// count; the first's next WELCOME asking for one (the field absent) drains the extras, and
// nothing replaces them.
func TestAWelcomeAskingForThreeConnectionsIsGivenThree(t *testing.T) {
	g := gwtest.New(t)
	w, _ := startOn(t, Config{Connect: []string{g.URL()}})
	first := g.Accept()
	first.WelcomeAsking(3)
	extras := []*gwtest.Conn{g.Accept(), g.Accept()}
	for _, x := range extras {
		sameHello(t, x, first)
		x.WelcomeAsking(1) // an extra's own WELCOME is not the count
	}
	serves(t, first, 1)
	for _, x := range extras {
		serves(t, x, 1)
	}

	_ = extras[0].WS.CloseNow()
	back := g.Accept()
	sameHello(t, back, first)
	back.Welcome(0)
	serves(t, back, 1)
	extras[0] = back

	// The first reconnects to a gateway that asks for one: the extras drain, the first serves.
	_ = first.WS.CloseNow()
	first = g.Accept()
	first.Welcome(0)
	for _, x := range extras {
		drained(t, x)
	}
	serves(t, first, 1)
	waitGateways(t, w, addrOf(t, g))
	g.NoAttempt(300 * time.Millisecond)
}

// TestAWelcomeWithoutConnectionsKeepsOneAndALaterCountAdds: a v1 WELCOME keeps one
// connection; a larger count on a later WELCOME adds an extra, which serves.
func TestAWelcomeWithoutConnectionsKeepsOneAndALaterCountAdds(t *testing.T) {
	g := gwtest.New(t)
	w, _ := startOn(t, Config{Connect: []string{g.URL()}})
	first := g.Accept()
	first.Welcome(0)
	serves(t, first, 1)
	g.NoAttempt(300 * time.Millisecond)
	waitGateways(t, w, addrOf(t, g))

	_ = first.WS.CloseNow()
	first = g.Accept()
	first.WelcomeAsking(2)
	extra := g.Accept()
	sameHello(t, extra, first)
	extra.Welcome(0)
	serves(t, extra, 1)
	serves(t, first, 1)
	waitGateways(t, w, addrOf(t, g), addrOf(t, g))
}

// TestTheExtrasGoWithTheirAddress (§9.1): a name that stops resolving to the address
// drains its first session and its extra alike, and the new address gets a session.
func TestTheExtrasGoWithTheirAddress(t *testing.T) {
	ga, gb := gwtest.New(t), gwtest.New(t)
	dns := &dnsTable{}
	dns.set("gateways.test", addrOf(t, ga))
	w, _ := startOn(t, Config{Connect: []string{"ws://gateways.test:9"}, Resolver: dns.resolve,
		ResolveInterval: 20 * time.Millisecond})
	first := ga.Accept()
	first.WelcomeAsking(2)
	extra := ga.Accept()
	extra.Welcome(0)
	serves(t, extra, 1)

	dns.set("gateways.test", addrOf(t, gb))
	other := gb.Accept()
	other.Welcome(0)
	drained(t, first)
	drained(t, extra)
	serves(t, other, 1)
	waitGateways(t, w, addrOf(t, gb))
}

// TestTLSKeepsTheHostNameWhenDiallingAnAddress: the certificate is checked against the
// URL's name (httptest's certificate names example.com), not the address dialled.
func TestTLSKeepsTheHostNameWhenDiallingAnAddress(t *testing.T) {
	g := gwtest.NewTLS(t)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, g.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	dns := &dnsTable{}
	dns.set("example.com", addrOf(t, g))
	startOn(t, Config{Connect: []string{"wss://example.com:" + strings.Split(g.URL(), ":")[2]},
		Resolver: dns.resolve, CAFile: ca})
	c := g.Accept()
	if c.Req.TLS == nil || c.Req.TLS.ServerName != "example.com" {
		t.Fatalf("TLS %+v", c.Req.TLS)
	}
	c.Welcome(0)
	serves(t, c, 1)
}

func TestABadGatewayListNamesTheEntry(t *testing.T) {
	for list, says := range map[string]string{
		"ws://127.0.0.1:1,http://127.0.0.1:2": `gateway address 2 of 2 ("http://127.0.0.1:2") must start with ws://`,
		"ws://127.0.0.1:1,":                   `gateway address 2 of 2 ("") is empty`,
		"ws://a:1, ws://a:1/":                 `gateway address 2 of 2 ("ws://a:1/") is listed twice`,
	} {
		t.Setenv(EnvConnect, list)
		_, err := NewWorker(Config{ID: "t:p"})
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%s: %v", list, err)
		}
	}
	t.Setenv(EnvConnect, "ws://127.0.0.1:1, ws://127.0.0.1:2")
	w, err := NewWorker(Config{ID: "t:p"})
	if err != nil || !slices.Equal(w.cfg.Connect, []string{"ws://127.0.0.1:1", "ws://127.0.0.1:2"}) {
		t.Fatalf("%v %v", w, err)
	}
}

// TestAnEmptyConnectStringTakesTheEnvironment: Connect []string{""} is no gateway given.
func TestAnEmptyConnectStringTakesTheEnvironment(t *testing.T) {
	t.Setenv(EnvConnect, "ws://127.0.0.1:1")
	w, err := NewWorker(Config{Connect: []string{""}, ID: "t:p"})
	if err != nil || !slices.Equal(w.cfg.Connect, []string{"ws://127.0.0.1:1"}) {
		t.Fatalf("%v %v", w, err)
	}
	t.Setenv(EnvConnect, "")
	if _, err := NewWorker(Config{Connect: []string{""}, ID: "t:p"}); err == nil || !strings.Contains(err.Error(), "no gateway address") {
		t.Fatalf("%v", err)
	}
}
