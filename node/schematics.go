package node

import (
	"context"
	"fmt"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/schematic"
)

// CreateSchematic stores s through Raft (write-once by ID) and returns after the write has committed. Creating an
// existing schematic is not an error: the official service answers 201 either way.
func (n *Node) CreateSchematic(ctx context.Context, s *schematic.Schematic) (string, []byte, error) {
	canonical, err := s.Marshal()
	if err != nil {
		return "", nil, fmt.Errorf("encode schematic: %w", err)
	}

	id := schematic.IDOf(canonical)

	if _, ok, err := n.store.Schematic(id); err == nil && ok {
		n.metrics.schematicsDuplicate.Inc()

		return id, canonical, nil
	}

	if err := n.store.PutSchematic(ctx, id, canonical); err != nil {
		return "", nil, fmt.Errorf("store schematic %s: %w", id, err)
	}

	n.metrics.schematicsCreated.Inc()

	return id, canonical, nil
}

// Schematic returns the canonical YAML of schematic id. IDs that are not 64 hex digits are simply not found, as in
// the official service.
func (n *Node) Schematic(_ context.Context, id string) ([]byte, error) {
	if schematic.ValidID(id) {
		yaml, ok, err := n.store.Schematic(id)
		if err != nil {
			return nil, fmt.Errorf("read schematic %s: %w", id, err)
		}

		if ok {
			return yaml, nil
		}
	}

	return nil, frontends.NewError(frontends.ClassNotFound, fmt.Sprintf("schematic ID %q not found", id), nil)
}
