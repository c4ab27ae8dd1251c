//go:build tools

// Keeps the conformance package, whose test binary is built with `go test -c`, in go.mod.
package deps

import _ "sigs.k8s.io/gateway-api/conformance"
