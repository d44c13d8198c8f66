package catalog

import (
	"context"
	"fmt"
	"reflect"
	"slices"

	"github.com/edgefactory/edgefactory/imager/release"
)

// readTalosctls reads the talosctl-all image of each version (those that have one: Talos 1.11 and later) into its
// replicated catalog, with bounded parallelism, so that followers list talosctl binaries without upstream traffic.
// A version whose tag still names the image read before costs one HEAD request. A registry without the image gives
// an empty list; a failed read keeps what was known, is retried on the next round, and never holds back the rest
// of the version's catalog, written before.
func (s *catalogSync) readTalosctls(ctx context.Context, versions []string) []error {
	return s.eachVersion(slices.DeleteFunc(slices.Clone(versions), func(v string) bool {
		return !release.ServesTalosctl(v)
	}), func(v string) error {
		err := s.readTalosctl(ctx, v)
		if err != nil {
			s.log.Error("read talosctl-all failed; talosctl downloads keep what was known, will retry",
				"version", v, "retry_in", s.retry, "error", err)

			s.mu.Lock()
			delete(s.checkedAt, v) // read the version again next round
			s.mu.Unlock()
		}

		return err
	})
}

func (s *catalogSync) readTalosctl(ctx context.Context, v string) error {
	c, ok, err := s.store.Catalog(v)
	if err != nil {
		return fmt.Errorf("read replicated catalog of %s: %w", v, err)
	}

	if !ok { // its catalog could not be read this round
		return nil
	}

	fresh, err := s.src.ReadTalosctl(ctx, v, c.Talosctl)
	if err != nil {
		return fmt.Errorf("read talosctl of %s: %w", v, err)
	}

	if reflect.DeepEqual(fresh, c.Talosctl) {
		return nil
	}

	c.Talosctl = fresh
	if err := s.store.PutCatalog(ctx, c); err != nil {
		return fmt.Errorf("write catalog of %s: %w", v, err)
	}

	s.log.Info("version talosctl binaries written", "version", v, "files", len(fresh.Names()), "image", imageOf(fresh))

	return nil
}

// imageOf is the talosctl-all image digest for logs ("" when there is none).
func imageOf(t *release.Talosctl) string {
	if t == nil {
		return ""
	}

	return t.Image
}
