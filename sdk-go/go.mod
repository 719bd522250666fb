module github.com/vyx-dev/vyx/sdk-go

go 1.22
