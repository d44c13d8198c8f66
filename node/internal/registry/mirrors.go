package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/encoder"
	"github.com/siderolabs/talos/pkg/machinery/config/types/cri"
	"github.com/siderolabs/talos/pkg/machinery/config/types/meta"

	"github.com/edgefactory/edgefactory/frontends"
)

// MirrorPatch is the Talos machine-configuration patch that points a machine of a Talos version at the cluster for
// every registry that version's imported images come from: one RegistryMirrorConfig document per registry, its
// endpoints the members' URLs (a member lost costs a retry on the next), with no fallback to the registry itself
// (an air-gapped site cannot reach it).
func (reg *Registry) MirrorPatch(_ context.Context, version string, endpoints []string) ([]byte, error) {
	settings, err := reg.store.Settings(imageTagPrefix)
	if err != nil {
		return nil, err
	}

	var registries []string

	for key, raw := range settings {
		var tag ImageTag
		if json.Unmarshal(raw, &tag) != nil || !slices.Contains(tag.Versions, version) {
			continue
		}

		host, _, _ := strings.Cut(strings.TrimPrefix(key, imageTagPrefix), "/")
		if !slices.Contains(registries, host) {
			registries = append(registries, host)
		}
	}

	if len(registries) == 0 {
		return nil, frontends.NewError(frontends.ClassNotFound,
			fmt.Sprintf("no image imported into this cluster serves Talos %s (edgefactory import brings them)", version),
			nil)
	}

	slices.Sort(registries)

	docs := make([]config.Document, 0, len(registries))

	for _, r := range registries {
		doc := cri.NewRegistryMirrorConfigV1Alpha1(r)
		doc.RegistrySkipFallback = new(true)

		for _, e := range endpoints {
			u, err := url.Parse(e)
			if err != nil {
				return nil, fmt.Errorf("member URL %q: %w", e, err)
			}

			doc.RegistryEndpoints = append(doc.RegistryEndpoints, cri.RegistryEndpoint{EndpointURL: meta.URL{URL: u}})
		}

		docs = append(docs, doc)
	}

	c, err := container.New(docs...)
	if err != nil {
		return nil, err
	}

	return c.EncodeBytes(encoder.WithComments(encoder.CommentsDisabled))
}
