package imager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/imager/profile"

	"github.com/edgefactory/edgefactory/imager/recipe"
	"github.com/edgefactory/edgefactory/imager/signing"
)

// run is one build, in its own directory under TmpDir, which it removes unless it returns an Output.
func (b *Builder) run(ctx context.Context, r recipe.Recipe, log *slog.Logger, report Report) (out *Output,
	err error,
) {
	start := time.Now()

	log.Info("build started", "kind", r.Kind(), "arch", r.Asset.Arch)

	dir, err := os.MkdirTemp(b.cfg.TmpDir, "build-*")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", r.Asset.Path, err)
	}

	defer func() {
		if err != nil {
			removeAll(dir, log)
			log.Warn("build failed", "elapsed", time.Since(start).Round(time.Millisecond), "err", err)
		}
	}()

	var path string

	if r.Talosctl != nil {
		report(StageFetching)
		path, err = b.extract(ctx, r, dir)
	} else {
		path, err = b.image(ctx, r, dir, log, report)
	}

	if err != nil {
		return nil, err
	}

	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("build %s: output: %w", r.Asset.Path, err)
	}

	log.Info("build done", "bytes", st.Size(), "elapsed", time.Since(start).Round(time.Millisecond))

	var once sync.Once

	return &Output{
		Path:    path,
		Size:    st.Size(),
		Cleanup: func() { once.Do(func() { removeAll(dir, log) }) },
	}, nil
}

// image runs the Talos imager for r in dir and returns the path of its output.
func (b *Builder) image(ctx context.Context, r recipe.Recipe, dir string, log *slog.Logger, report Report) (string,
	error,
) {
	report(StageFetching)

	prof, err := b.prepare(ctx, r, dir)
	if err != nil {
		return "", timedOut(ctx, b.cfg.Timeout, err)
	}

	report(StageBuilding)

	path, err := b.execute(ctx, prof, dir, log, report)
	if err != nil {
		return "", timedOut(ctx, b.cfg.Timeout, fmt.Errorf("build %s: %w", r.Asset.Kind, err))
	}

	if r.Asset.Kind == profile.OutKindInstaller {
		if err := pinInstallerCreated(path); err != nil {
			return "", fmt.Errorf("build %s: %w", r.Asset.Kind, err)
		}
	}

	return path, nil
}

// prepare fetches the inputs, writes the schematic extension, secure-boot keys and embedded configuration into dir
// and returns the profile.
func (b *Builder) prepare(ctx context.Context, r recipe.Recipe, dir string) (profile.Profile, error) {
	paths, err := b.cfg.Inputs.Fetch(ctx, r.Inputs, r.Asset.Arch)
	if err != nil {
		return profile.Profile{}, fmt.Errorf("fetch inputs: %w", err)
	}

	if paths.SchematicExtension, err = writeSchematicExtension(r, dir); err != nil {
		return profile.Profile{}, fmt.Errorf("schematic extension: %w", err)
	}

	if r.Asset.SecureBoot {
		if paths.SecureBoot, err = b.secureBoot(r, filepath.Join(dir, "keys")); err != nil {
			return profile.Profile{}, fmt.Errorf("secure-boot keys: %w", err)
		}
	}

	prof, err := r.Profile(paths)
	if err != nil {
		return profile.Profile{}, fmt.Errorf("profile: %w", err)
	}

	if err := embedConfig(&prof, dir); err != nil {
		return profile.Profile{}, fmt.Errorf("embedded configuration: %w", err)
	}

	return prof, nil
}

func writeSchematicExtension(r recipe.Recipe, dir string) (string, error) {
	path := filepath.Join(dir, r.SchematicID+".tar")

	f, err := os.Create(path)
	if err != nil {
		return "", err
	}

	if err := recipe.SchematicExtension(f, r.SchematicID, r.Schematic, r.Author, r.Version); err != nil {
		f.Close() // already failing

		return "", err
	}

	return path, f.Close()
}

// secureBoot writes the keys for one build, after checking they are the ones the recipe was planned with: the
// recipe key covers the fingerprint, so other keys would give bytes that do not belong to the key.
func (b *Builder) secureBoot(r recipe.Recipe, dir string) (*profile.SecureBootAssets, error) {
	var k *signing.SecureBootKeys
	if b.cfg.SecureBoot != nil {
		k = b.cfg.SecureBoot()
	}

	if k == nil {
		return nil, errors.New("secure boot is disabled on this builder (no keys)")
	}

	if fp := k.Fingerprint(); r.SecureBootKeys != fp {
		return nil, fmt.Errorf("recipe planned with keys %q, builder has %q", r.SecureBootKeys, fp)
	}

	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("secure-boot keys: %w", err)
	}

	return k.WriteFiles(dir)
}

func timedOut(ctx context.Context, timeout time.Duration, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (build timeout %s)", err, timeout)
	}

	return err
}

func removeAll(dir string, log *slog.Logger) {
	if err := os.RemoveAll(dir); err != nil {
		log.Error("remove build directory", "dir", dir, "err", err)
	}
}
