// Package frameworks holds the tests that mount third-party routers (chi, gin) on a vyx
// Worker. It is a module of its own so that the SDK's go.mod needs none of them.
package frameworks
