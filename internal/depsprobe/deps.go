// Package depsprobe pins dependencies while the real packages are written. Temporary.
package depsprobe

import (
	_ "github.com/buraksezer/consistent"
	_ "github.com/cespare/xxhash/v2"
	_ "github.com/go-chi/chi/v5"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/v1/layout"
	_ "github.com/google/go-containerregistry/pkg/crane"
	_ "github.com/google/uuid"
	_ "github.com/hashicorp/memberlist"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/rs/cors"
	_ "github.com/siderolabs/talos/pkg/imager"
	_ "github.com/siderolabs/talos/pkg/imager/profile"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "github.com/u-root/u-root/pkg/cpio"
	_ "github.com/ulikunitz/xz"
	_ "go.etcd.io/bbolt"
	_ "go.yaml.in/yaml/v4"
	_ "github.com/blang/semver/v4"
)
