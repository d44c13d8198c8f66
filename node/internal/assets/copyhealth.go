package assets

import (
	"context"
	"time"

	"github.com/edgefactory/edgefactory/node/internal/peer"
)

// What a node remembers about copies that went wrong: which members sent corrupt bytes of a blob (skipped as
// sources for badSourceMemory, and the reason ranges of those bytes are answered whole here meanwhile), and which
// blobs no member could deliver (built again instead of fetched).

// badSourceMemory is how long a member that sent corrupt bytes of a blob is skipped for that blob.
const badSourceMemory = 10 * time.Minute

// markLost remembers that no member could deliver a verified copy of digest: the next request builds it instead
// of failing the same way again.
func (s *Service) markLost(digest string) {
	s.mu.Lock()
	s.lost[digest] = s.now()
	s.mu.Unlock()
}

// lostRecently reports whether the last copy of digest found no member with verified bytes.
func (s *Service) lostRecently(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()

	when, ok := s.lost[digest]
	if ok && s.now().Sub(when) >= badSourceMemory {
		delete(s.lost, digest)

		return false
	}

	return ok
}

// Found forgets that digest was lost: its bytes are stored here again.
func (s *Service) Found(digest string) {
	s.mu.Lock()
	delete(s.lost, digest)
	s.mu.Unlock()
}

// wholeOnly reports whether digest's bytes are answered whole, whatever Range asks: a copy of them arriving here
// turned out corrupt less than badSourceMemory ago, after clients had received its first bytes. A client resuming
// such a download would complete a wrong file from a bad beginning; a full 200 makes it start over.
func (s *Service) wholeOnly(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.wholeOnlyLocked(digest)
}

func (s *Service) wholeOnlyLocked(digest string) bool {
	return len(s.badSourcesLocked(digest)) > 0
}

// badSourcesLocked lists (s.mu held) the members that sent corrupt bytes of digest less than badSourceMemory ago,
// forgetting older reports.
func (s *Service) badSourcesLocked(digest string) []string {
	var names []string

	for name, when := range s.bad[digest] {
		if s.now().Sub(when) < badSourceMemory {
			names = append(names, name)
		} else {
			delete(s.bad[digest], name)
		}
	}

	if len(names) == 0 {
		delete(s.bad, digest)
	}

	return names
}

func (s *Service) markBad(digest, name string) {
	s.mu.Lock()
	if s.bad[digest] == nil {
		s.bad[digest] = map[string]time.Time{}
	}
	s.bad[digest][name] = s.now()
	s.mu.Unlock()

	if base, ok := s.cluster.PeerURL(name); ok {
		go func() {
			ctx, cancel := context.WithTimeout(s.bg, peer.Timeout)
			defer cancel()

			if err := s.peers.Verify(ctx, base, digest); err != nil {
				s.log.Warn("could not ask a peer to check its copy", "peer", name, "error", err)
			}
		}()
	}
}
