package vyx

import (
	"net/http"
	"strings"
)

// This file reads Handle's patterns as http.ServeMux does (Go 1.22 patterns), so that a
// pattern means the same on a Worker as on a ServeMux:
//
//	/a/{$}     only /a/ (the exact-match marker)
//	/a/        /a/ and every path below it (a subtree); /a redirects to /a/
//	/a/{p...}  /a/ and below, the rest in r.PathValue("p")
//	/a         only /a
//
// In the protocol a subtree is a catch-all whose name no handler sees (subtreeParam).

// subtreeParam names the catch-all a subtree pattern ends with: not a valid Go identifier, so
// no ServeMux pattern can declare it, and newRequest leaves it out of r.PathValue.
const subtreeParam = "vyx-subtree"

// protocolPath turns the path part of a ServeMux pattern into a protocol pattern (§2.5), and
// for a subtree returns its root without the trailing slash ("" for "/"), which ServeMux
// redirects to the subtree.
func protocolPath(path string) (pattern, subtreeRoot string) {
	switch {
	case strings.HasSuffix(path, "/{$}"):
		return strings.TrimSuffix(path, "{$}"), ""
	case strings.HasSuffix(path, "...}"):
		if i := strings.LastIndex(path, "/{"); i >= 0 && !strings.HasPrefix(path[i+2:], "*") {
			return path[:i+2] + "*" + strings.TrimSuffix(path[i+2:], "...}") + "}", ""
		}
	case strings.HasSuffix(path, "/"):
		return path + "{*" + subtreeParam + "}", strings.TrimSuffix(path, "/")
	}
	return path, ""
}

// subtreeRedirect answers as http.ServeMux does for a subtree's root named without its
// slash (a redirect to the subtree, whose status depends on the Go release): it is a ServeMux
// holding only the subtree's pattern.
func subtreeRedirect(pattern string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(pattern, http.NotFoundHandler())
	return mux
}
