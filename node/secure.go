package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgefactory/edgefactory/node/internal/clusterport"
	"github.com/edgefactory/edgefactory/node/internal/peer"
	"github.com/edgefactory/edgefactory/node/internal/tlsca"
	"github.com/edgefactory/edgefactory/raftstore"
)

// A secure cluster (docs/architecture.md §15): members talk over mutual TLS on one cluster port, with certificates
// of a cluster CA kept in Raft, and gossip encrypted with a key the cluster holds. A member's own material lives in
// <data>/tls (mode 0700): its certificate and key, the CAs it trusts, the gossip key, and, on a member made by
// `edgefactory init`, the CA and the first join token until the cluster records them.
const (
	tlsDirName      = "tls"
	fileCA          = "ca.crt"      // PEM bundle: the CAs trusted
	fileCAKey       = "ca.key"      // the signing CA's key (init only)
	fileMemberCert  = "member.crt"  // this member's certificate
	fileMemberKey   = "member.key"  // its key
	fileGossipKey   = "gossip.key"  // raw key bytes
	fileInitTokens  = "tokens.json" // tokens made by init, until the cluster records them
	fileSigningCert = "signing.crt" // the signing CA's certificate (init only)
)

// Raft settings of a secure cluster.
const (
	settingCA        = "cluster/ca"           // the signing CA: {"cert","key"} PEM
	settingTrust     = "cluster/trust"        // {"cas": [PEM]}: every CA member certificates may chain to
	settingGossipKey = "cluster/gossip-key"   // {"keys": [base64], "primary": base64}
	settingRevoked   = "cluster/revoked"      // {serial: revokedCert}: member certificates refused
	settingCerts     = "cluster/certificates" // {serial: issuedCert}: the members' certificates in use
	tokenPrefix      = "join-token/"          // join-token/<id>: tokenRecord
)

// Lifetimes (tests shorten them through tuning).
const (
	defaultCertValidity = 90 * 24 * time.Hour
	caValidity          = 10 * 365 * 24 * time.Hour
	// DefaultTokenTTL is how long a join token made without --ttl admits new members.
	DefaultTokenTTL = 24 * time.Hour
	joinRetry       = time.Second
	defaultJoinWait = 5 * time.Minute
)

// caRecord is the signing CA as Raft keeps it.
type caRecord struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// trustRecord lists the CAs member certificates may chain to (two during a CA rotation).
type trustRecord struct {
	CAs []string `json:"cas"`
}

// revokedCert is a revoked member certificate (by serial in settingRevoked).
type revokedCert struct {
	Member string    `json:"member"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
}

// issuedCert is a member certificate in use (by serial in settingCerts).
type issuedCert struct {
	Member   string    `json:"member"`
	CA       string    `json:"ca"` // fingerprint of the CA that signed it
	NotAfter time.Time `json:"notAfter"`
}

// gossipKeys is the cluster's gossip keyring.
type gossipKeys struct {
	Keys    [][]byte `json:"keys"`
	Primary []byte   `json:"primary"`
}

// tokenRecord is a join token as the cluster keeps it: never the secret, only its hash.
type tokenRecord struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"createdBy,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// secure is this member's part in a secure cluster.
type secure struct {
	dir       string
	id        *tlsca.Identity
	trust     *tlsca.Trust
	port      *clusterport.Port
	server    *http.Server
	gossipKey []byte
	validity  time.Duration

	// From init, until the cluster holds them: the CA that signs, and the first tokens.
	mu         sync.Mutex
	localCA    *tlsca.CA
	initTokens map[string]tokenRecord

	joinRefused *prometheus.CounterVec
}

// InitResult is what `edgefactory init` made.
type InitResult struct {
	// Token admits other members (`serve --join-token`) until it expires.
	Token   string
	Expires time.Time
	// CAFingerprint names the cluster CA.
	CAFingerprint string
}

// Init prepares dataDir for the first member of a secure cluster: it creates the cluster CA, the gossip key and a
// first join token valid for ttl, kept in <dataDir>/tls until the cluster records them at its first start. A data
// directory that already holds a member's certificate or CA is left alone (an error says so).
func Init(dataDir, cluster string, ttl time.Duration) (InitResult, error) {
	dir := filepath.Join(dataDir, tlsDirName)
	if _, err := os.Stat(filepath.Join(dir, fileCA)); err == nil {
		return InitResult{}, fmt.Errorf("%s already belongs to a cluster (%s exists): `edgefactory token create` on "+
			"a member makes more join tokens", dataDir, filepath.Join(dir, fileCA))
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return InitResult{}, fmt.Errorf("create %s: %w", dir, err)
	}

	ca, err := tlsca.NewCA(cluster, caValidity)
	if err != nil {
		return InitResult{}, err
	}

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return InitResult{}, err
	}

	token, rec, err := newToken(ca, ttl, "init")
	if err != nil {
		return InitResult{}, err
	}

	tokens, err := json.Marshal(map[string]tokenRecord{rec.ID: rec})
	if err != nil {
		return InitResult{}, err
	}

	for name, data := range map[string][]byte{
		fileSigningCert: ca.CertPEM, fileCAKey: ca.KeyPEM, fileGossipKey: key, fileInitTokens: tokens,
		fileCA: ca.CertPEM, // last: its presence says the directory is initialised
	} {
		if err := writeFileAtomic(filepath.Join(dir, name), data); err != nil {
			return InitResult{}, err
		}
	}

	return InitResult{Token: token.String(), Expires: rec.Expires, CAFingerprint: tlsca.Fingerprint(ca.Cert)}, nil
}

// newToken makes a join token of ca and the record the cluster keeps of it.
func newToken(ca *tlsca.CA, ttl time.Duration, by string) (tlsca.Token, tokenRecord, error) {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}

	t, err := tlsca.NewToken(tlsca.Fingerprint(ca.Cert))
	if err != nil {
		return tlsca.Token{}, tokenRecord{}, err
	}

	now := time.Now().UTC().Truncate(time.Second)

	return t, tokenRecord{ID: t.ID, Hash: tlsca.HashSecret(t.Secret), Expires: now.Add(ttl), CreatedBy: by,
		CreatedAt: now}, nil
}

// writeFileAtomic writes a private file whole or not at all.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}

	return nil
}

// readFile reads a file of the member's tls directory; absent is (nil, nil).
func (s *secure) readFile(name string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}

	return data, err
}

// readPair reads a certificate and its key from the member's tls directory; absent files are nil.
func (s *secure) readPair(certName, keyName string) (cert, key []byte, err error) {
	if cert, err = s.readFile(certName); err != nil {
		return nil, nil, err
	}

	key, err = s.readFile(keyName)

	return cert, key, err
}

// openSecure sets up this member's identity, joining the cluster with the join token when it has none, and binds
// the cluster port.
func (n *Node) openSecure() error {
	cfg := n.cfg
	s := &secure{
		dir: filepath.Join(cfg.DataDir, tlsDirName), id: tlsca.NewIdentity(), trust: tlsca.NewTrust(),
		validity: cfg.certValidity(),
		joinRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edgefactory_join_refused_total",
			Help: "Join requests refused, by reason (bad_request, unknown_token, expired, bad_secret, no_ca).",
		}, []string{"reason"}),
	}
	n.reg.MustRegister(s.joinRefused)

	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dir, err)
	}

	if err := s.loadLocal(); err != nil {
		return err
	}

	joinedBefore := s.id.Certificate() != nil && s.localCA == nil

	if s.id.Certificate() == nil {
		switch {
		case s.localCA != nil:
			if err := s.issueOwn(s.localCA, cfg.NodeName, n.certHosts()); err != nil {
				return err
			}
		case cfg.JoinToken != "":
			if err := n.join(s); err != nil {
				return err
			}
		default:
			return errors.New("this member has no certificate of a cluster: start it with --join-token (from " +
				"`edgefactory token create` on a member, or `edgefactory init` for the first member)")
		}
	}

	port, err := clusterport.Listen(clusterport.Config{
		Listen: cfg.ClusterListen, Advertise: cfg.ClusterAdvertise, Server: tlsca.ServerConfig(s.id, s.trust, nil),
		Client:     func(proto string) *tls.Config { return tlsca.ClientConfig(s.id, s.trust, proto) },
		Registerer: n.reg, Logger: n.log.With("component", "cluster-port"),
	})
	if err != nil {
		return err
	}

	s.port = port
	n.secure = s

	if joinedBefore {
		s.catchUpGossipKey(n.seedsOtherThanSelf(), n.log)
	}
	n.peers = peer.NewClient("", cfg.peerSilence(), tlsca.ClientConfig(s.id, s.trust, clusterport.ProtoPeer))

	n.log.Info("cluster port: mutual TLS", "addr", port.Addr().String(), "member", cfg.NodeName,
		"certificate_expires", s.id.NotAfter().Format(time.RFC3339))

	return nil
}

// loadLocal reads <data>/tls: the trusted CAs, this member's certificate, the gossip key, and init's CA and tokens.
func (s *secure) loadLocal() error {
	bundle, err := s.readFile(fileCA)
	if err != nil {
		return err
	}

	if bundle != nil {
		if err := s.trust.Set(splitPEM(bundle), nil); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(s.dir, fileCA), err)
		}
	}

	if s.gossipKey, err = s.readFile(fileGossipKey); err != nil {
		return err
	}

	signCert, signKey, err := s.readPair(fileSigningCert, fileCAKey)
	if err != nil {
		return err
	}

	if signCert != nil && signKey != nil {
		if s.localCA, err = tlsca.ParseCA(signCert, signKey); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(s.dir, fileCAKey), err)
		}
	}

	if raw, err := s.readFile(fileInitTokens); err != nil {
		return err
	} else if raw != nil {
		if err := json.Unmarshal(raw, &s.initTokens); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(s.dir, fileInitTokens), err)
		}
	}

	cert, key, err := s.readPair(fileMemberCert, fileMemberKey)
	if err != nil || cert == nil {
		return err
	}

	ca, err := s.issuerOf(cert)
	if err != nil {
		return err
	}

	return s.id.Set(cert, key, ca)
}

// issuerOf finds the trusted CA (PEM) that issued a member certificate.
func (s *secure) issuerOf(certPEM []byte) ([]byte, error) {
	leaf, err := tlsca.ParseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}

	for _, root := range s.trust.Roots() {
		if leaf.CheckSignatureFrom(root) == nil {
			return tlsca.EncodeCert(root), nil
		}
	}

	return nil, fmt.Errorf("this member's certificate (%s) was issued by no CA it trusts", filepath.Join(s.dir,
		fileMemberCert))
}

// issueOwn signs a certificate for this member with ca and makes it the member's identity.
func (s *secure) issueOwn(ca *tlsca.CA, name string, hosts []string) error {
	key, keyPEM, err := tlsca.NewKey()
	if err != nil {
		return err
	}

	csr, err := tlsca.NewCSR(key, name)
	if err != nil {
		return err
	}

	cert, err := ca.Sign(csr, name, hosts, s.validity)
	if err != nil {
		return err
	}

	return s.adopt(cert, keyPEM, ca.CertPEM)
}

// adopt stores a new certificate of this member and presents it from now on.
func (s *secure) adopt(certPEM, keyPEM, caPEM []byte) error {
	if err := s.id.Set(certPEM, keyPEM, caPEM); err != nil {
		return err
	}

	if err := writeFileAtomic(filepath.Join(s.dir, fileMemberKey), keyPEM); err != nil {
		return err
	}

	return writeFileAtomic(filepath.Join(s.dir, fileMemberCert), certPEM)
}

// certHosts are the names and addresses this member's certificate carries.
func (n *Node) certHosts() []string {
	hosts := []string{n.cfg.NodeName}

	for _, addr := range []string{n.cfg.ClusterAdvertise, n.cfg.ClusterListen} {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" {
			hosts = append(hosts, h)
		} else if addr != "" && !strings.Contains(addr, ":") {
			hosts = append(hosts, addr)
		}
	}

	return slices.Compact(hosts)
}

// joinRequest is what a member without a certificate sends a seed's POST /join.
type joinRequest struct {
	Token  string   `json:"token"` // the token's ID
	Secret string   `json:"secret"`
	Member string   `json:"member"`
	CSR    string   `json:"csr"`
	Hosts  []string `json:"hosts"`
}

// joinResponse is what it receives.
type joinResponse struct {
	Cert      string   `json:"cert"`
	CA        string   `json:"ca"`  // the CA that signed it
	CAs       []string `json:"cas"` // every CA trusted
	GossipKey []byte   `json:"gossipKey"`
	Gossip    string   `json:"gossip"` // the seed's gossip address
}

// join asks the seeds (their cluster ports) for a certificate with the join token, until one gives it.
func (n *Node) join(s *secure) error {
	token, err := tlsca.ParseToken(n.cfg.JoinToken)
	if err != nil {
		return fmt.Errorf("--join-token: %w", err)
	}

	seeds := n.seedsOtherThanSelf()
	if len(seeds) == 0 {
		return errors.New("--join-token needs --join: the cluster ports (host:port) of members to ask")
	}

	key, keyPEM, err := tlsca.NewKey()
	if err != nil {
		return err
	}

	csr, err := tlsca.NewCSR(key, n.cfg.NodeName)
	if err != nil {
		return err
	}

	body, err := json.Marshal(joinRequest{Token: token.ID, Secret: token.Secret, Member: n.cfg.NodeName, //nolint:gosec // sent over TLS to a seed whose CA the token names
		CSR: string(csr), Hosts: n.certHosts()})
	if err != nil {
		return err
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsca.JoinClientConfig(token.CAFingerprint, clusterport.ProtoPeer),
	}}
	defer client.CloseIdleConnections()

	deadline := time.Now().Add(n.cfg.joinWait())
	lastLog := time.Time{}

	for {
		var errs []error

		for _, seed := range seeds {
			res, err := askToJoin(n.ctx, client, seed, body)
			if err == nil {
				return n.joined(s, res, keyPEM, seed)
			}

			var refused *joinRefusedError
			if errors.As(err, &refused) {
				return fmt.Errorf("join through %s: %w", seed, err) // the token will not do: no point retrying
			}

			errs = append(errs, fmt.Errorf("%s: %w", seed, err))
		}

		if time.Now().After(deadline) {
			return fmt.Errorf("join: no seed gave this member a certificate within %s: %w", n.cfg.joinWait(),
				errors.Join(errs...))
		}

		if time.Since(lastLog) > time.Minute {
			lastLog = time.Now()
			n.log.Warn("join: waiting for a seed's cluster port; retrying", "seeds", seeds, "error", errors.Join(errs...))
		}

		select {
		case <-n.ctx.Done():
			return n.ctx.Err()
		case <-time.After(joinRetry):
		}
	}
}

// joinRefusedError is a seed's refusal of the join token itself.
type joinRefusedError struct{ msg string }

func (e *joinRefusedError) Error() string { return "refused: " + e.msg }

func askToJoin(ctx context.Context, client *http.Client, seed string, body []byte) (joinResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+seed+"/join", bytes.NewReader(body))
	if err != nil {
		return joinResponse{}, err
	}

	resp, err := client.Do(req)
	if err != nil {
		return joinResponse{}, err
	}
	defer resp.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return joinResponse{}, err
	}

	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest:
		return joinResponse{}, &joinRefusedError{msg: strings.TrimSpace(string(raw))}
	case resp.StatusCode != http.StatusOK:
		return joinResponse{}, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}

	var out joinResponse

	return out, json.Unmarshal(raw, &out)
}

// joined keeps what a seed gave: the certificate, the CAs, the gossip key.
func (n *Node) joined(s *secure, res joinResponse, keyPEM []byte, seed string) error {
	cas := make([][]byte, 0, len(res.CAs))
	for _, c := range res.CAs {
		cas = append(cas, []byte(c))
	}

	if err := s.trust.Set(cas, nil); err != nil {
		return fmt.Errorf("join through %s: the CAs it sent: %w", seed, err)
	}

	if len(res.GossipKey) == 0 {
		return fmt.Errorf("join through %s: no gossip key in the answer", seed)
	}

	s.gossipKey = res.GossipKey

	for name, data := range map[string][]byte{fileGossipKey: res.GossipKey, fileCA: bytes.Join(cas, nil)} {
		if err := writeFileAtomic(filepath.Join(s.dir, name), data); err != nil {
			return err
		}
	}

	if err := s.adopt([]byte(res.Cert), keyPEM, []byte(res.CA)); err != nil {
		return fmt.Errorf("join through %s: %w", seed, err)
	}

	n.log.Info("joined: this member has its certificate", "seed", seed, "expires",
		s.id.NotAfter().Format(time.RFC3339))

	return nil
}

// seedsOtherThanSelf are the seeds (cluster ports) without this member's own.
func (n *Node) seedsOtherThanSelf() []string {
	self := map[string]bool{n.cfg.ClusterListen: true, n.cfg.ClusterAdvertise: true}

	return slices.DeleteFunc(slices.Clone(n.cfg.Join), func(s string) bool { return self[s] })
}

// gossipAnswer is GET /gossip on the cluster port: the member's gossip address and, to a member, the primary key.
type gossipAnswer struct {
	Addr string `json:"addr"`
	Key  []byte `json:"key,omitempty"`
	seed string // which seed answered (the asker's note)
}

// clusterRouter serves the cluster port's HTTP side: the peer API (member certificates only), POST /join and
// GET /gossip (no certificate needed).
func (n *Node) clusterRouter(peerMount func(chi.Router)) http.Handler {
	r := chi.NewRouter()
	peerMount(r)
	r.Post("/join", n.secure.serveJoin(n))
	r.Get("/gossip", func(w http.ResponseWriter, r *http.Request) {
		answer := gossipAnswer{Addr: n.cluster.GossipAddr()}
		if _, member := tlsca.PeerMember(r.TLS); member {
			answer.Key, _ = n.secure.clusterGossipKey(n.store) // members only: one back from a rotation it missed
		}

		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer) //nolint:errcheck // the client hung up
	})

	return r
}

// serveJoin signs the certificate of a member presenting a valid join token.
func (s *secure) serveJoin(n *Node) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		refuse := func(status int, reason, msg string) {
			s.joinRefused.WithLabelValues(reason).Inc()
			n.log.Warn("join refused", "remote", r.RemoteAddr, "reason", reason, "detail", msg)
			http.Error(w, msg, status)
		}

		var req joinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil || req.Member == "" ||
			req.CSR == "" {
			refuse(http.StatusBadRequest, "bad_request", "want a JSON join request naming a member and its CSR")

			return
		}

		rec, ok := s.token(n.store, req.Token)

		switch {
		case !ok:
			refuse(http.StatusForbidden, "unknown_token", "unknown or revoked join token "+req.Token)

			return
		case time.Now().After(rec.Expires):
			refuse(http.StatusForbidden, "expired", "join token "+req.Token+" expired at "+
				rec.Expires.Format(time.RFC3339))

			return
		case !tlsca.CheckSecret(rec.Hash, req.Secret):
			refuse(http.StatusForbidden, "bad_secret", "wrong secret for join token "+req.Token)

			return
		}

		ca, err := s.signingCA(n.store)
		if err != nil {
			refuse(http.StatusServiceUnavailable, "no_ca", err.Error())

			return
		}

		cert, err := ca.Sign([]byte(req.CSR), req.Member, req.Hosts, s.validity)
		if err != nil {
			refuse(http.StatusBadRequest, "bad_request", "certificate request: "+err.Error())

			return
		}

		key, err := s.clusterGossipKey(n.store)
		if err != nil {
			refuse(http.StatusServiceUnavailable, "no_ca", err.Error())

			return
		}

		var cas []string
		for _, root := range s.trust.Roots() {
			cas = append(cas, string(tlsca.EncodeCert(root)))
		}

		n.log.Info("join: certificate issued", "member", req.Member, "token", req.Token, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(joinResponse{Cert: string(cert), CA: string(ca.CertPEM), CAs: cas, //nolint:errcheck // the client hung up
			GossipKey: key, Gossip: n.cluster.GossipAddr()})
	}
}

// token finds a join token: in Raft, else among init's (before the cluster recorded them).
func (s *secure) token(store *raftstore.Store, id string) (tokenRecord, bool) {
	if raw, ok, err := store.Setting(tokenPrefix + id); err == nil && ok {
		var rec tokenRecord

		return rec, json.Unmarshal(raw, &rec) == nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	rec, ok := s.initTokens[id]

	return rec, ok
}

// signingCA is the CA that signs members' certificates: Raft's, else init's.
func (s *secure) signingCA(store *raftstore.Store) (*tlsca.CA, error) {
	if raw, ok, err := store.Setting(settingCA); err == nil && ok {
		var rec caRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("cluster CA in Raft: %w", err)
		}

		return tlsca.ParseCA([]byte(rec.Cert), []byte(rec.Key))
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	if s.localCA == nil {
		return nil, errors.New("this member cannot sign yet: it has not received the cluster's CA")
	}

	return s.localCA, nil
}

// clusterGossipKey is the primary gossip key: Raft's, else this member's own.
func (s *secure) clusterGossipKey(store *raftstore.Store) ([]byte, error) {
	if raw, ok, err := store.Setting(settingGossipKey); err == nil && ok {
		var rec gossipKeys
		if err := json.Unmarshal(raw, &rec); err == nil && len(rec.Primary) > 0 {
			return rec.Primary, nil
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()

	if len(s.gossipKey) == 0 {
		return nil, errors.New("this member has no gossip key to give")
	}

	return s.gossipKey, nil
}

// record puts what init made into Raft once, from the member init made, whichever member leads: the CA, the trust,
// the gossip key and init's tokens (the first committed value of each wins).
func (s *secure) record(ctx context.Context, n *Node) error {
	s.mu.Lock()
	ca, tokens := s.localCA, s.initTokens
	s.mu.Unlock()

	if ca == nil {
		return nil // this member joined: the cluster holds them already
	}

	enc := func(v any) []byte { b, _ := json.Marshal(v); return b } //nolint:errchkjson // plain records

	var roots []string
	for _, r := range s.trust.Roots() {
		roots = append(roots, string(tlsca.EncodeCert(r)))
	}

	writes := map[string][]byte{
		settingCA:        enc(caRecord{Cert: string(ca.CertPEM), Key: string(ca.KeyPEM)}),
		settingTrust:     enc(trustRecord{CAs: roots}),
		settingGossipKey: enc(gossipKeys{Keys: [][]byte{s.gossipKey}, Primary: s.gossipKey}),
	}
	for id, rec := range tokens {
		writes[tokenPrefix+id] = enc(rec)
	}

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	for key, value := range writes {
		if _, ok, err := n.store.Setting(key); err == nil && ok {
			continue
		}

		if _, err := raftstore.InitSetting(ctx, n.cluster, key, value); err != nil {
			return err
		}
	}

	return nil
}

// follow keeps this member in line with the cluster, until ctx ends: the CAs trusted and the certificates revoked,
// its own certificate renewed (before a third of its lifetime is left, or when the signing CA changed) and recorded,
// the gossip keyring as the cluster rotates it.
func (s *secure) follow(ctx context.Context, n *Node) {
	t := time.NewTicker(time.Second)
	defer t.Stop()

	var (
		seen     []byte
		recorded bool
	)

	for {
		if !recorded {
			if err := s.record(ctx, n); err != nil {
				n.log.Debug("record the cluster CA, gossip key and join tokens: will retry", "error", err)
			} else {
				recorded = true
			}
		}

		trust, okT, errT := n.store.Setting(settingTrust)
		revoked, _, errR := n.store.Setting(settingRevoked)

		if errT == nil && errR == nil && okT {
			if state := append(slices.Clone(trust), revoked...); !bytes.Equal(state, seen) {
				if err := s.applyTrust(trust, revoked); err != nil {
					n.log.Error("cluster trust in Raft not applied", "error", err)
				} else {
					seen = state
				}
			}
		}

		s.renew(ctx, n)
		s.recordOwn(ctx, n)
		s.applyGossipKeys(n)

		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *secure) applyTrust(trustRaw, revokedRaw []byte) error {
	var tr trustRecord
	if err := json.Unmarshal(trustRaw, &tr); err != nil {
		return err
	}

	var rv map[string]revokedCert
	if len(revokedRaw) > 0 {
		if err := json.Unmarshal(revokedRaw, &rv); err != nil {
			return err
		}
	}

	cas := make([][]byte, 0, len(tr.CAs))
	for _, c := range tr.CAs {
		cas = append(cas, []byte(c))
	}

	if err := s.trust.Set(cas, slices.Sorted(maps.Keys(rv))); err != nil {
		return err
	}

	return writeFileAtomic(filepath.Join(s.dir, fileCA), bytes.Join(cas, nil))
}

// splitPEM splits a PEM bundle into its blocks.
func splitPEM(bundle []byte) [][]byte {
	var out [][]byte

	for {
		block, rest := pemDecode(bundle)
		if block == nil {
			return out
		}

		out = append(out, block)
		bundle = rest
	}
}

// pemDecode returns the first PEM block of data, re-encoded, and the rest; nil when there is none.
func pemDecode(data []byte) (block, rest []byte) {
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, nil
	}

	return pem.EncodeToMemory(b), rest
}

// resolveSeeds asks each seed's cluster port for its gossip address (GET /gossip, the seed's certificate checked);
// a seed that does not answer is left out of this attempt.
func (s *secure) resolveSeeds(seeds []string) []string {
	var out []string

	for _, answer := range s.askGossip(seeds, false) {
		out = append(out, answer.Addr)
	}

	return out
}

// askGossip asks each seed's cluster port for GET /gossip with this member's certificate, the seed's checked; it
// returns the answers of the seeds that gave one, and stops at the first when first is set.
func (s *secure) askGossip(seeds []string, first bool) []gossipAnswer {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsca.ClientConfig(s.id, s.trust, clusterport.ProtoPeer),
	}}
	defer client.CloseIdleConnections()

	var out []gossipAnswer

	for _, seed := range seeds {
		resp, err := client.Get("https://" + seed + "/gossip") //nolint:noctx // bounded by the client's timeout
		if err != nil {
			continue
		}

		var body gossipAnswer

		err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
		resp.Body.Close()

		if err != nil || body.Addr == "" {
			continue
		}

		body.seed = seed
		if out = append(out, body); first && len(body.Key) > 0 {
			return out
		}
	}

	return out
}

// renew re-issues this member's certificate with the cluster's signing CA when a third of its lifetime is left or
// another CA signs now (a CA rotation). Every member holds the CA in its Raft replica: no round trip is needed.
func (s *secure) renew(ctx context.Context, n *Node) {
	if ctx.Err() != nil {
		return
	}

	ca, err := s.signingCA(n.store)
	if err != nil {
		return // not recorded yet
	}

	leaf := s.id.Leaf()
	rotated := leaf != nil && leaf.CheckSignatureFrom(ca.Cert) != nil
	due := leaf == nil || time.Until(leaf.NotAfter) < s.validity/3

	if !rotated && !due {
		return
	}

	if err := s.issueOwn(ca, n.cfg.NodeName, n.certHosts()); err != nil {
		n.log.Error("renew this member's certificate", "error", err)

		return
	}

	n.log.Info("certificate renewed", "ca_rotated", rotated, "expires", s.id.NotAfter().Format(time.RFC3339),
		"serial", tlsca.SerialHex(s.id.Leaf()))
}

// recordOwn records this member's certificate among those in use, once the cluster can take writes.
func (s *secure) recordOwn(ctx context.Context, n *Node) {
	leaf := s.id.Leaf()
	if leaf == nil || ctx.Err() != nil {
		return
	}

	serial := tlsca.SerialHex(leaf)

	var certs map[string]issuedCert
	if raw, ok, err := n.store.Setting(settingCerts); err == nil && ok {
		_ = json.Unmarshal(raw, &certs) // a record that does not decode is written again below
	}

	if _, ok := certs[serial]; ok {
		return
	}

	issuer := ""
	for _, root := range s.trust.Roots() {
		if leaf.CheckSignatureFrom(root) == nil {
			issuer = tlsca.Fingerprint(root)
		}
	}

	patch, err := json.Marshal(map[string]issuedCert{serial: {Member: n.cfg.NodeName, CA: issuer,
		NotAfter: leaf.NotAfter.UTC()}})
	if err != nil {
		return
	}

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	if _, err := raftstore.PatchSetting(wctx, n.cluster, settingCerts, patch); err != nil {
		n.log.Debug("record this member's certificate: will retry", "error", err)
	}
}

// applyGossipKeys makes the gossip keyring hold the cluster's keys, with its primary key in use, and keeps the
// primary key in <data>/tls for the next start.
func (s *secure) applyGossipKeys(n *Node) {
	kr := n.cluster.Keyring()
	if kr == nil {
		return
	}

	raw, ok, err := n.store.Setting(settingGossipKey)
	if err != nil || !ok {
		return
	}

	var rec gossipKeys
	if err := json.Unmarshal(raw, &rec); err != nil || len(rec.Primary) == 0 {
		return
	}

	if installKeys(kr, rec.Keys, rec.Primary) {
		n.log.Info("gossip keyring changed by the cluster", "keys", len(rec.Keys))

		if err := writeFileAtomic(filepath.Join(s.dir, fileGossipKey), rec.Primary); err != nil {
			n.log.Error("keep the gossip key", "error", err)
		}
	}

	s.mu.Lock()
	s.gossipKey = rec.Primary
	s.mu.Unlock()
}

// installKeys makes kr hold exactly keys (primary among them) with primary in use; it reports whether it changed.
func installKeys(kr *memberlist.Keyring, keys [][]byte, primary []byte) bool {
	changed := false

	for _, k := range append(keys, primary) {
		if !slices.ContainsFunc(kr.GetKeys(), func(have []byte) bool { return bytes.Equal(have, k) }) {
			if kr.AddKey(k) == nil {
				changed = true
			}
		}
	}

	if !bytes.Equal(kr.GetPrimaryKey(), primary) && kr.UseKey(primary) == nil {
		changed = true
	}

	for _, have := range kr.GetKeys() {
		if !bytes.Equal(have, primary) && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, have) }) {
			if kr.RemoveKey(have) == nil {
				changed = true
			}
		}
	}

	return changed
}

// catchUpGossipKey asks the seeds for the cluster's gossip key before gossip starts: a member that was down while the
// cluster rotated it would otherwise be unable to rejoin. Best effort: without an answer, the key it has is used.
func (s *secure) catchUpGossipKey(seeds []string, log *slog.Logger) {
	for _, answer := range s.askGossip(seeds, true) {
		if len(answer.Key) == 0 {
			continue
		}

		s.mu.Lock()
		changed := !bytes.Equal(s.gossipKey, answer.Key)
		s.gossipKey = answer.Key
		s.mu.Unlock()

		if changed {
			log.Info("gossip key taken from a seed: the cluster rotated it while this member was away",
				"seed", answer.seed)

			if err := writeFileAtomic(filepath.Join(s.dir, fileGossipKey), answer.Key); err != nil {
				log.Error("keep the gossip key", "error", err)
			}
		}

		return
	}
}
