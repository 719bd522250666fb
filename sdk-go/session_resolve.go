package vyx

// Where a gateway URL leads: its host and port, and the addresses its host name resolves
// to (core/src/session/resolve.rs). A worker holds one session per address, so a name
// that resolves to every gateway (a headless Service, round-robin DNS) reaches every
// gateway.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Resolver turns a gateway's host name and port into the addresses to dial
// (Config.Resolver). The default asks net.DefaultResolver.
//
//	cfg.Resolver = func(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
//		return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("10.0.0.7"), uint16(port))}, nil
//	}
type Resolver func(ctx context.Context, host string, port int) ([]netip.AddrPort, error)

func systemResolver(ctx context.Context, host string, port int) ([]netip.AddrPort, error) {
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		addrs[i] = netip.AddrPortFrom(ip.Unmap(), uint16(port))
	}
	return addrs, nil
}

// target is one gateway URL of the connect list, taken apart.
type target struct {
	url  string // the registration URL (§2.1) dialled at each address
	host string // as it is resolved: no brackets around an IPv6 literal
	port int
}

// parseTarget is connect as a target, or why it cannot be one.
func parseTarget(connect string) (target, error) {
	var tls bool
	switch {
	case strings.HasPrefix(connect, "wss://"):
		tls = true
	case strings.HasPrefix(connect, "ws://"):
	default:
		return target{}, errors.New("must start with ws:// or wss://")
	}
	reg := registrationURL(connect)
	u, err := url.Parse(reg)
	if err != nil {
		return target{}, errors.New("is not a URL: " + err.Error())
	}
	if u.Hostname() == "" {
		return target{}, errors.New("names no host")
	}
	port := 80
	if tls {
		port = 443
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil || port > 65535 {
			return target{}, errors.New("is not a URL: bad port " + p)
		}
	}
	return target{url: reg, host: u.Hostname(), port: port}, nil
}

// addresses are t's, without duplicates, in the order given: an IP literal is its own
// address and asks no resolver.
func (w *Worker) addresses(ctx context.Context, t target) ([]netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(t.host); err == nil {
		return []netip.AddrPort{netip.AddrPortFrom(ip, uint16(t.port))}, nil
	}
	addrs, err := w.cfg.Resolver(ctx, t.host, t.port)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, a := range addrs {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
