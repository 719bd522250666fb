module github.com/vyx-dev/vyx/spec/conformance/workers/go

go 1.23

require github.com/vyx-dev/vyx/sdk-go v0.0.0

require github.com/coder/websocket v1.8.15

replace github.com/vyx-dev/vyx/sdk-go => ../../../../sdk-go
