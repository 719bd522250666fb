// Package grpcinterop runs grpc-go's interop test cases through vyx: grpc-go's interop
// TestService, mounted on the Go SDK through grpc.Server's ServeHTTP, reached by grpc-go's
// interop client through a real gateway binary with its default limits, over h2c
// (TestInterop) and over TLS with grpc-go's test certificate and CA, the worker on wss://
// (TestInteropOverTLS). TestConnectHandlerThroughVyx does the same for a connectrpc
// handler, called with grpc-go's client (the gRPC protocol) and connect's own (the Connect
// protocol, over HTTP/1.1 and h2c). It is a module of its own so that grpc and connect stay
// out of the SDK's go.mod.
//
// The gateway is $VYX_GATEWAY, else $CARGO_TARGET_DIR/release/vyx (scripts/test builds it);
// the test fails, never skips, without one.
//
// Every test case of grpc-go's interop client that a plaintext TestService can answer runs
// (interopCases). Those that do not, and why:
//
//   - compute_engine_creds, service_account_creds, jwt_token_creds, per_rpc_creds,
//     oauth2_auth_token, google_default_credentials, compute_engine_channel_credentials:
//     Google credentials and TLS to Google's test servers, nothing ServeHTTP or vyx is in;
//   - pick_first_unary: asks for FillServerId, which only the xDS interop server fills
//     (the interop TestService answers an empty server id);
//   - orca_oob: needs a 1 s ORCA reporting interval, which only grpc-go's internal package
//     can allow (the public minimum is 30 s).
package grpcinterop
