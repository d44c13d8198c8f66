package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/edgefactory/edgefactory/frontends"
	"github.com/edgefactory/edgefactory/frontends/auth"
	"github.com/edgefactory/edgefactory/node/internal/tlsca"
	"github.com/edgefactory/edgefactory/raftstore"
)

// The secure cluster's API on the public port (docs/api.md §14), every route guarded as a settings change
// (frontends/auth): join tokens, the members' certificates, CA and gossip-key rotation.

// TokenInfo describes a join token (never its secret).
type TokenInfo struct {
	ID        string    `json:"id"`
	Expires   time.Time `json:"expires"`
	Expired   bool      `json:"expired"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// Token is the whole token, only in the answer to its creation.
	Token string `json:"token,omitempty"`
}

// CertificateInfo describes a member certificate in use or revoked.
type CertificateInfo struct {
	Serial   string    `json:"serial"`
	Member   string    `json:"member"`
	CA       string    `json:"ca,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	Revoked  bool      `json:"revoked"`
}

// rotationSettle is how long a rotation waits between steps for every member to apply the last (they read their
// replica every second).
const rotationSettle = 3 * time.Second

func (n *Node) mountSecureAPI(r chi.Router) {
	r.Route("/cluster/tokens", func(r chi.Router) {
		r.Use(n.needSecure)
		r.Get("/", n.listTokens)
		r.Post("/", n.createToken)
		r.Delete("/{id}", n.revokeToken)
	})
	r.Route("/cluster/certificates", func(r chi.Router) {
		r.Use(n.needSecure)
		r.Get("/", n.listCertificates)
		r.Post("/{member}/revoke", n.revokeMember)
	})
	r.Route("/cluster/rotate", func(r chi.Router) {
		r.Use(n.needSecure)
		r.Post("/ca", n.rotateCA)
		r.Post("/gossip-key", n.rotateGossipKey)
	})
}

// needSecure answers 409 on a member that is not in a secure cluster.
func (n *Node) needSecure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.secure == nil {
			http.Error(w, "this member is not in a secure cluster: join tokens, certificates and rotation need "+
				"--cluster-listen (README \"Securing a cluster\")", http.StatusConflict)

			return
		}

		next.ServeHTTP(w, r)
	})
}

func (n *Node) listTokens(w http.ResponseWriter, r *http.Request) {
	recs, err := n.store.Settings(tokenPrefix)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	out := []TokenInfo{}

	for _, raw := range recs {
		var rec tokenRecord
		if json.Unmarshal(raw, &rec) == nil {
			out = append(out, tokenInfo(rec))
		}
	}

	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	frontends.WriteDocument(w, r, http.StatusOK, out)
}

func tokenInfo(rec tokenRecord) TokenInfo {
	return TokenInfo{ID: rec.ID, Expires: rec.Expires, Expired: time.Now().After(rec.Expires),
		CreatedBy: rec.CreatedBy, CreatedAt: rec.CreatedAt}
}

// createToken makes a join token: POST /cluster/tokens with an optional {"ttl": "24h"}.
func (n *Node) createToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TTL string `json:"ttl"`
	}

	if body, _ := io.ReadAll(io.LimitReader(r.Body, 4096)); len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, `want {"ttl": "24h"} or no body: `+err.Error(), http.StatusBadRequest)

			return
		}
	}

	ttl := DefaultTokenTTL

	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d < time.Minute || d > 30*24*time.Hour {
			http.Error(w, fmt.Sprintf("ttl %q: want a duration from 1m to 720h", req.TTL), http.StatusBadRequest)

			return
		}

		ttl = d
	}

	ca, err := n.secure.signingCA(n.store)
	if err != nil {
		frontends.WriteError(w, r, n.log, frontends.NewError(frontends.ClassUnavailable, err.Error(), err))

		return
	}

	token, rec, err := newToken(ca, ttl, auth.Who(r))
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	if err := n.putJSONSetting(r.Context(), tokenPrefix+rec.ID, rec); err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	n.log.Info("join token created", "id", rec.ID, "by", rec.CreatedBy, "expires", rec.Expires)

	info := tokenInfo(rec)
	info.Token = token.String()
	frontends.WriteDocument(w, r, http.StatusCreated, info)
}

func (n *Node) putJSONSetting(ctx context.Context, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}

	return raftstore.PutSetting(ctx, n.cluster, key, raw)
}

// revokeToken deletes a join token: members it admitted keep their certificates.
func (n *Node) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")

	existed, err := raftstore.DeleteSetting(r.Context(), n.cluster, tokenPrefix+id)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	if !existed {
		http.Error(w, "no join token "+id, http.StatusNotFound)

		return
	}

	n.log.Info("join token revoked", "id", id, "by", auth.Who(r))
	w.WriteHeader(http.StatusNoContent)
}

// certificates reads the certificates in use and those revoked.
func (n *Node) certificates() (map[string]issuedCert, map[string]revokedCert, error) {
	var (
		issued  map[string]issuedCert
		revoked map[string]revokedCert
	)

	for key, into := range map[string]any{settingCerts: &issued, settingRevoked: &revoked} {
		raw, ok, err := n.store.Setting(key)
		if err != nil {
			return nil, nil, err
		}

		if ok {
			if err := json.Unmarshal(raw, into); err != nil {
				return nil, nil, fmt.Errorf("%s: %w", key, err)
			}
		}
	}

	return issued, revoked, nil
}

func (n *Node) listCertificates(w http.ResponseWriter, r *http.Request) {
	issued, revoked, err := n.certificates()
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	out := []CertificateInfo{}

	for serial, c := range issued {
		_, gone := revoked[serial]
		out = append(out, CertificateInfo{Serial: serial, Member: c.Member, CA: c.CA, NotAfter: c.NotAfter,
			Revoked: gone})
	}

	for serial, c := range revoked {
		if _, listed := issued[serial]; !listed {
			out = append(out, CertificateInfo{Serial: serial, Member: c.Member, Revoked: true})
		}
	}

	sort.Slice(out, func(i, j int) bool {
		return out[i].Member < out[j].Member || out[i].Member == out[j].Member && out[i].Serial < out[j].Serial
	})
	frontends.WriteDocument(w, r, http.StatusOK, out)
}

// revokeMember revokes every certificate of a member: no member accepts it from then on (a member that is removed,
// or whose disk left the site). It needs a new join token to come back.
func (n *Node) revokeMember(w http.ResponseWriter, r *http.Request) {
	member := chi.URLParam(r, "member")
	if member == n.cfg.NodeName {
		http.Error(w, "a member cannot revoke its own certificate: ask another member", http.StatusBadRequest)

		return
	}

	issued, _, err := n.certificates()
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	patch := map[string]revokedCert{}

	for serial, c := range issued {
		if c.Member == member {
			patch[serial] = revokedCert{Member: member, At: time.Now().UTC().Truncate(time.Second), By: auth.Who(r)}
		}
	}

	if len(patch) == 0 {
		http.Error(w, "no certificate of a member named "+member, http.StatusNotFound)

		return
	}

	raw, err := json.Marshal(patch)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	if _, err := raftstore.PatchSetting(r.Context(), n.cluster, settingRevoked, raw); err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	n.log.Warn("member certificates revoked", "member", member, "serials", slices.Sorted(maps.Keys(patch)),
		"by", auth.Who(r))
	frontends.WriteDocument(w, r, http.StatusOK, map[string]any{"member": member, "revoked": slices.Sorted(maps.Keys(patch))})
}

// rotateCA replaces the cluster CA without downtime: the new CA is trusted next to the old, then signs; every member
// renews its certificate with it; once every alive member has, the old CA is no longer trusted. Join tokens name the
// old CA and must be made again.
func (n *Node) rotateCA(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	fresh, err := tlsca.NewCA("edgefactory", caValidity)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	var roots []string
	for _, c := range n.secure.trust.Roots() {
		roots = append(roots, string(tlsca.EncodeCert(c)))
	}

	// The new CA is trusted everywhere before it signs anything, and signs before the old one goes.
	for _, step := range []struct {
		key   string
		value any
	}{
		{settingTrust, trustRecord{CAs: append(roots, string(fresh.CertPEM))}},
		{settingCA, caRecord{Cert: string(fresh.CertPEM), Key: string(fresh.KeyPEM)}},
	} {
		if err := n.putJSONSetting(ctx, step.key, step.value); err != nil {
			frontends.WriteError(w, r, n.log, err)

			return
		}

		if !sleepCtx(ctx, rotationSettle) {
			return
		}
	}

	fp := tlsca.Fingerprint(fresh.Cert)

	waiting, err := n.waitRenewed(ctx, fp, 2*time.Minute)
	if err != nil {
		http.Error(w, fmt.Sprintf("the new CA %s signs, and the old one is still trusted: members %s have not "+
			"renewed their certificates yet (%v); rotate again once they are back", fp, strings.Join(waiting, ", "),
			err), http.StatusServiceUnavailable)

		return
	}

	if err := n.putJSONSetting(ctx, settingTrust, trustRecord{CAs: []string{string(fresh.CertPEM)}}); err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	n.log.Warn("cluster CA rotated", "ca", fp, "by", auth.Who(r))
	frontends.WriteDocument(w, r, http.StatusOK, map[string]string{"ca": fp})
}

// waitRenewed waits until every alive member has a recorded certificate of the CA fp; it returns those that have
// not when the wait ends.
func (n *Node) waitRenewed(ctx context.Context, fp string, limit time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()

	for {
		issued, _, err := n.certificates()
		if err != nil {
			return nil, err
		}

		var waiting []string

		for _, name := range n.cluster.Members() {
			if !slices.ContainsFunc(slices.Collect(maps.Values(issued)), func(c issuedCert) bool {
				return c.Member == name && c.CA == fp && time.Now().Before(c.NotAfter)
			}) {
				waiting = append(waiting, name)
			}
		}

		if len(waiting) == 0 {
			return nil, nil
		}

		if !sleepCtx(ctx, 200*time.Millisecond) {
			return waiting, errors.New("timed out")
		}
	}
}

// rotateGossipKey replaces the gossip key without a gap: the new key is installed everywhere, then used, then the
// old one removed, each step given time to reach every member.
func (n *Node) rotateGossipKey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()

	old, err := n.secure.clusterGossipKey(n.store)
	if err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		frontends.WriteError(w, r, n.log, err)

		return
	}

	for i, rec := range []gossipKeys{
		{Keys: [][]byte{old, fresh}, Primary: old},   // everyone can read the new key
		{Keys: [][]byte{old, fresh}, Primary: fresh}, // everyone writes with it
		{Keys: [][]byte{fresh}, Primary: fresh},      // the old one goes
	} {
		if err := n.putJSONSetting(ctx, settingGossipKey, rec); err != nil {
			frontends.WriteError(w, r, n.log, err)

			return
		}

		if i < 2 && !sleepCtx(ctx, rotationSettle) {
			return
		}
	}

	n.log.Warn("gossip key rotated", "by", auth.Who(r))
	frontends.WriteDocument(w, r, http.StatusOK, map[string]string{"rotated": "gossip-key"})
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
