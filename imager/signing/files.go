package signing

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/siderolabs/talos/pkg/imager/profile"
)

// File names WriteFiles uses, as `talosctl gen secureboot` names them.
const (
	SigningKeyFile  = "uki-signing-key.pem"
	SigningCertFile = "uki-signing-cert.pem"
	PCRKeyFile      = "pcr-signing-key.pem"
)

// WriteFiles writes the material into dir (created 0700 if missing) as three 0600 files, each written to a
// temporary file, fsynced and renamed, and returns the Talos imager's view of them.
func (k *SecureBootKeys) WriteFiles(dir string) (*profile.SecureBootAssets, error) {
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("write secure-boot keys: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write secure-boot keys: %w", err)
	}

	for _, f := range []struct {
		name string
		data []byte
	}{{SigningKeyFile, k.SigningKey}, {SigningCertFile, k.SigningCert}, {PCRKeyFile, k.PCRKey}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return nil, fmt.Errorf("write secure-boot keys: %w", err)
		}
	}

	return &profile.SecureBootAssets{
		SecureBootSigner: profile.SigningKeyAndCertificate{
			KeyPath:  filepath.Join(dir, SigningKeyFile),
			CertPath: filepath.Join(dir, SigningCertFile),
		},
		PCRSigner: profile.SigningKey{KeyPath: filepath.Join(dir, PCRKeyFile)},
	}, nil
}

// writeFileAtomic writes data to path with mode 0600: a crash leaves the old file or the new one, never a part.
func writeFileAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}

	defer func() {
		if err != nil {
			f.Close()           // already failing
			os.Remove(f.Name()) // best effort
		}
	}()

	// CreateTemp makes 0600 files; Chmod states it, whatever the umask did.
	if err = f.Chmod(0o600); err != nil {
		return err
	}

	if _, err = f.Write(data); err != nil {
		return err
	}

	if err = f.Sync(); err != nil {
		return err
	}

	if err = f.Close(); err != nil {
		return err
	}

	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}

	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}

	defer d.Close() // read-only handle

	return d.Sync()
}
