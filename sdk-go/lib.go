// Package vyx is the Go SDK of the vyx protocol, a pure-Go mirror of the Rust core
// (core/src/, file for file: lib.rs is this file, handshake.rs is handshake.go, ...).
//
// This layer holds the protocol rules that need no socket: HELLO and WELCOME validation
// (handshake.go), worker-id syntax, the reconnect backoff (backoff.go), flow-control
// accounting (flow.go), the heartbeat tick counter (transport.go) and the limits of
// PROTOCOL.md §10 (limits.go). The wire codec is the frame subpackage.
package vyx
