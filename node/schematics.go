package node

import (
	"context"
	"fmt"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/imager/schematic"
	"github.com/edgefactory/edgefactory/raftstore"
)

// CreateSchematic stores s through Raft (write-once by ID) from any node and returns after the write has committed
// and is readable here. Creating an existing schematic is not an error: the official service answers 201 either way.
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

	if err := raftstore.PutSchematic(ctx, n.cluster, id, canonical); err != nil {
		return "", nil, fmt.Errorf("store schematic %s: %w", id, err)
	}

	n.metrics.schematicsCreated.Inc()

	return id, canonical, nil
}

// Schematic returns the canonical YAML of schematic id. A schematic missing here is read from the leader before the
// answer is "not found", so a schematic created through any node is readable through every node at once, and a
// node behind the log answers without waiting for it. IDs that are not 64 hex digits are simply not found, as in
// the official service.
func (n *Node) Schematic(ctx context.Context, id string) ([]byte, error) {
	if !schematic.ValidID(id) {
		return nil, schematicNotFound(id)
	}

	yaml, ok, err := n.store.Schematic(id)
	if err != nil {
		return nil, fmt.Errorf("read schematic %s: %w", id, err)
	}

	if ok {
		return yaml, nil
	}

	if yaml, ok, err = n.cluster.SchematicFromLeader(ctx, id); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}

		return nil, frontends.NewError(frontends.ClassUnavailable,
			"cannot confirm with the Raft leader: "+err.Error(), err)
	}

	if !ok {
		return nil, schematicNotFound(id)
	}

	return yaml, nil
}

func schematicNotFound(id string) error {
	return frontends.NewError(frontends.ClassNotFound, fmt.Sprintf("schematic ID %q not found", id), nil)
}
