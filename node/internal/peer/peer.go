// Package peer is the members' own protocol, client and server together: forwarded Raft writes, read indexes and
// records read from the leader, Raft removals, blobs by digest, assets built or fetched for a peer, copies pushed
// to holders. It is never public API: it lives under /_peer/ on the public listener and every request carries the
// cluster secret.
//
// Guarantee: no other package reads an HTTP status of this protocol. The client turns every failure into an *Error
// matched with errors.Is against a kind (ErrUnreachable, ErrUnavailable, raftstore.ErrNotLeader, ErrNotFound,
// ErrInvalid, ErrKeepVoter, ErrStateDiffers); the server maps the errors of the interfaces it is built on back to
// the statuses the client reads. A member that says nothing for the silence limit is abandoned (ErrSilent); one
// that builds for minutes is not silent, it sends 102 Processing while it works.
package peer

import (
	"errors"
	"fmt"
	"time"

	"github.com/edgefactory/edgefactory/raftstore"
)

const (
	// Prefix is where the protocol lives on the public listener.
	Prefix = "/_peer"
	// recordHeader carries the asset index record (JSON) with a streamed asset.
	recordHeader = "X-Edgefactory-Asset"
	// Timeout bounds calls answered at once (apply, read index, records, pull, verify).
	Timeout = 15 * time.Second
	// SilenceTimeout abandons a peer that sends nothing for this long while a request waits on it: no response (a
	// member that accepts connections but is stuck: stopped, deadlocked, on a dead disk), or no bytes of a body
	// under way. The request goes on with the next holder, so a stuck member does not hold a download forever.
	SilenceTimeout = 30 * time.Second
)

// Kinds of failure a call can end with (errors.Is on the *Error the client returns). A refused write or a member
// that is not the leader is matched with raftstore.ErrNotLeader.
var (
	// ErrUnreachable: the member did not answer (no connection, reset, or silent for the silence limit).
	ErrUnreachable = errors.New("member unreachable")
	// ErrUnavailable: the member answered that it cannot serve this now (no leader, no quorum, failing).
	ErrUnavailable = errors.New("member unavailable")
	// ErrNotFound: the member has no such thing.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the member refused the request itself; every member would.
	ErrInvalid = errors.New("request refused")
	// ErrKeepVoter refuses the removal of a leaving voter: the voters alive could not commit without it (another
	// voter is down). It leaves gossip only and stays a voter, counted again when it comes back.
	ErrKeepVoter = errors.New("the voters alive could not commit without it, so it stays a raft voter")
	// ErrStateDiffers: the member asked for an asset planned another recipe key from its state than the asker.
	ErrStateDiffers = errors.New("recipe key mismatch (state differs)")
	// ErrSilent: the member sent nothing for the silence limit (matched together with ErrUnreachable).
	ErrSilent = errors.New("peer sent nothing")
)

// Error is a failed call to a member.
type Error struct {
	Peer   string // the member's address
	Status int    // the HTTP status it answered; 0 when it did not answer
	Msg    string // what it said, or why it could not be reached
	kind   error
	cause  error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("peer %s: %s", e.Peer, e.Msg)
	}

	return fmt.Sprintf("peer %s: %d %s", e.Peer, e.Status, e.Msg)
}

// Is matches the failure's kind.
func (e *Error) Is(target error) bool { return target != nil && target == e.kind }

// Unwrap gives the transport error behind an unreachable member, if any.
func (e *Error) Unwrap() error { return e.cause }

// PullRequest asks a member to keep a copy of an asset's bytes, fetched from the members listed (in order).
type PullRequest struct {
	Record raftstore.AssetRecord `json:"record"`
	From   []string              `json:"from"`
}

// AssetRequest is what a member asks another to get or build for it: an asset of a schematic, version and path,
// or (Talosctl set) the talosctl binary File of a version. Key and Index pin the asker's plan: the recipe key it
// planned, and its Raft applied index then.
type AssetRequest struct {
	SchematicID, Version, Path string
	Talosctl                   bool
	Key                        string
	Index                      uint64
}

// BuildState is a build in flight on a member: what /_peer/builds/{key} answers.
type BuildState struct {
	Key     string    `json:"key"`
	Member  string    `json:"member"`
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
}
