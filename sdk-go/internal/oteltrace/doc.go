// Package oteltrace proves that a Go worker's own OpenTelemetry instrumentation continues
// the gateway's trace: a real gateway binary with tracing on exports its span to a small
// OTLP/HTTP receiver here, the handler is wrapped in otelhttp as any net/http app would be,
// and the test asserts one trace: the client's span, the gateway's span under it, and the
// worker's span under the gateway's. The SDK needs no hook for this: the gateway's
// traceparent reaches the handler's *http.Request like any header. It is a module of its
// own so that OpenTelemetry stays out of the SDK's go.mod.
//
// The gateway is $VYX_GATEWAY, else $CARGO_TARGET_DIR/release/vyx; the test fails, never
// skips, without one.
package oteltrace
