package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The audit log (issue 6 §7): what happened, who did it (Actor), to whom
// (Subject), with which client, from where and when. Rows never hold a
// secret; the writer (authz) keeps tokens and passwords out of Details.

// Audit event names.
const (
	EventLoginSuccess       = "login.success"
	EventLoginFailure       = "login.failure"
	EventConsentGranted     = "consent.granted"
	EventConsentRevoked     = "consent.revoked"
	EventClientRegistered   = "client.registered"
	EventClientUpdated      = "client.updated"
	EventClientDeleted      = "client.deleted"
	EventClientDisabled     = "client.disabled"
	EventClientEnabled      = "client.enabled"
	EventTokenIssued        = "token.issued"
	EventTokenRefreshed     = "token.refreshed"
	EventTokenRevoked       = "token.revoked"
	EventTokenReuseDetected = "token.reuse_detected"
	EventGrantRevoked       = "grant.revoked"
	EventKeyRotated         = "key.rotated"
	EventPATCreated         = "pat.created"
	EventPATRevoked         = "pat.revoked"
	EventUserCreated        = "user.created"
	EventUserDisabled       = "user.disabled"
	EventUserEnabled        = "user.enabled"
	EventUserPasswordReset  = "user.password_reset"
	EventUserAdminChanged   = "user.admin_changed"
)

// AuditEvents lists every event name, for filters and documentation.
var AuditEvents = []string{
	EventLoginSuccess, EventLoginFailure, EventConsentGranted, EventConsentRevoked,
	EventClientRegistered, EventClientUpdated, EventClientDeleted, EventClientDisabled, EventClientEnabled,
	EventTokenIssued, EventTokenRefreshed, EventTokenRevoked, EventTokenReuseDetected, EventGrantRevoked,
	EventKeyRotated, EventPATCreated, EventPATRevoked,
	EventUserCreated, EventUserDisabled, EventUserEnabled, EventUserPasswordReset, EventUserAdminChanged,
}

// AuditEvent is one row of the audit log.
type AuditEvent struct {
	ID       int64
	At       time.Time // zero: the database's now() when inserted
	Event    string    // one of the Event* names
	Actor    string    // who did it: a user name, "client:<id>", "cli", "system"; "" unknown
	Subject  string    // whom or what it was done to: a user id or name, a grant id, a key id
	ClientID string    // the OAuth client concerned, if any
	ClientIP string    // the request's client IP; "" when none (CLI) or not an IP
	Details  map[string]any

	// EncodedDetails, when set (by EncodeAuditDetails), is what
	// InsertAuditEvents stores instead of Details.
	EncodedDetails []byte
}

// MaxAuditDetailsBytes bounds an event's encoded details: larger ones are
// stored as {"truncated": true, "bytes": N, "keys": [the keys]}.
const MaxAuditDetailsBytes = 4 << 10

// EncodeAuditDetails encodes e.Details into e.EncodedDetails (and clears
// Details) as InsertAuditEvents stores them: JSON, invalid UTF-8 and NUL
// as U+FFFD, at most MaxAuditDetailsBytes. It fails only for details JSON
// cannot encode (a programming error); e is then unchanged.
func EncodeAuditDetails(e *AuditEvent) error {
	if e.EncodedDetails != nil {
		return nil
	}
	b, err := encodeAuditDetails(e.Details)
	if err != nil {
		return fmt.Errorf("encode audit details of %q: %w", e.Event, err)
	}
	e.EncodedDetails, e.Details = b, nil
	return nil
}

func encodeAuditDetails(details map[string]any) ([]byte, error) {
	if len(details) == 0 {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(details) // invalid UTF-8 becomes U+FFFD
	if err != nil {
		return nil, err
	}
	// jsonb refuses \u0000.
	b = bytes.ReplaceAll(b, []byte(`\u0000`), []byte(`\ufffd`))
	if len(b) > MaxAuditDetailsBytes {
		keys := slices.Sorted(maps.Keys(details))
		for len(keys) > 0 {
			t, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(b), "keys": keys})
			if len(t) <= MaxAuditDetailsBytes {
				return t, nil
			}
			keys = keys[:len(keys)/2]
		}
		return json.Marshal(map[string]any{"truncated": true, "bytes": len(b)})
	}
	return b, nil
}

// AuditFilter selects audit events, newest first. Empty fields do not filter.
type AuditFilter struct {
	User     string // matches Actor or Subject exactly
	ClientID string
	Event    string
	Since    time.Time // At >= Since
	Until    time.Time // At < Until
	Before   int64     // paging: ID < Before
	Limit    int       // DefaultAuditLimit when 0, MaxAuditLimit at most
}

// Bounds of AuditFilter.Limit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// maxAuditText bounds each text column of an event, in bytes.
const maxAuditText = 1000

// auditText makes s storable in a text column whatever a client sent: valid
// UTF-8, no NUL (PostgreSQL refuses both, and one bad event would fail its
// whole batch), at most maxAuditText bytes.
func auditText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) > maxAuditText {
		s = strings.ToValidUTF8(s[:maxAuditText], "")
	}
	return s
}

// InsertAuditEvents writes events in one round trip (COPY). Text is made
// storable (see auditText; Details as EncodeAuditDetails encodes them, when
// EncodedDetails is not set already). An event whose
// ClientIP is not an IP address is stored without one.
func (db *DB) InsertAuditEvents(ctx context.Context, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(events))
	for _, e := range events {
		var ip *netip.Addr
		if a, err := netip.ParseAddr(e.ClientIP); err == nil {
			a = a.WithZone("")
			ip = &a
		}
		details := e.EncodedDetails
		if details == nil {
			var err error
			if details, err = encodeAuditDetails(e.Details); err != nil {
				return fmt.Errorf("insert audit events: encode details of %q: %w", e.Event, err)
			}
		}
		at := e.At
		if at.IsZero() {
			at = time.Now()
		}
		rows = append(rows, []any{at, auditText(e.Event), nullString(auditText(e.Actor)), nullString(auditText(e.Subject)),
			nullString(auditText(e.ClientID)), ip, details})
	}
	_, err := db.q(ctx).CopyFrom(ctx, pgx.Identifier{"audit_events"},
		[]string{"at", "event", "actor", "subject", "client_id", "client_ip", "details"},
		pgx.CopyFromRows(rows))
	return dbErr("insert audit events", err)
}

// ListAuditEvents returns the events that f selects, newest first.
func (db *DB) ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = DefaultAuditLimit
	case limit > MaxAuditLimit:
		limit = MaxAuditLimit
	}
	var since, until *time.Time
	if !f.Since.IsZero() {
		since = &f.Since
	}
	if !f.Until.IsZero() {
		until = &f.Until
	}
	rows, err := db.q(ctx).Query(ctx, `
		SELECT id, at, event, coalesce(actor, ''), coalesce(subject, ''), coalesce(client_id, ''),
			coalesce(host(client_ip), ''), details
		FROM audit_events
		WHERE ($1 = '' OR actor = $1 OR subject = $1)
		  AND ($2 = '' OR client_id = $2)
		  AND ($3 = '' OR event = $3)
		  AND ($4::timestamptz IS NULL OR at >= $4)
		  AND ($5::timestamptz IS NULL OR at < $5)
		  AND ($6 = 0 OR id < $6)
		ORDER BY id DESC
		LIMIT $7`, f.User, f.ClientID, f.Event, since, until, f.Before, limit)
	if err != nil {
		return nil, dbErr("list audit events", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var (
			e       AuditEvent
			details []byte
		)
		if err := rows.Scan(&e.ID, &e.At, &e.Event, &e.Actor, &e.Subject, &e.ClientID, &e.ClientIP, &details); err != nil {
			return nil, dbErr("list audit events", err)
		}
		e.At = e.At.UTC()
		if err := json.Unmarshal(details, &e.Details); err != nil {
			return nil, fmt.Errorf("list audit events: decode details of %d: %w", e.ID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list audit events", err)
	}
	return out, nil
}

// PruneAuditEvents deletes the events older than before, in batches, and
// returns how many it deleted.
func (db *DB) PruneAuditEvents(ctx context.Context, before time.Time) (int64, error) {
	var deleted int64
	for {
		tag, err := db.q(ctx).Exec(ctx, `DELETE FROM audit_events WHERE id = ANY(ARRAY(
			SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2))`, before, cleanupBatch)
		if err != nil {
			return deleted, dbErr("prune audit events", err)
		}
		deleted += tag.RowsAffected()
		if tag.RowsAffected() < cleanupBatch {
			return deleted, nil
		}
	}
}

// GrantRevokedEvent is the audit event of revoking the grant grantID, by
// the one convention of the console, the admin API, the CLI and the
// admin_revoke tool: Subject the user's name (none for a client's own
// grant), ClientID its client, Details["grant_id"] the id. Build it before
// revoking (GrantParties); when the grant's parties cannot be read, the
// event names the grant only.
func (db *DB) GrantRevokedEvent(ctx context.Context, grantID string) AuditEvent {
	e := AuditEvent{Event: EventGrantRevoked, Details: map[string]any{"grant_id": grantID}}
	if clientID, userID, username, err := db.GrantParties(ctx, grantID); err == nil {
		e.ClientID, e.Subject = clientID, username
		if userID != "" {
			e.Details["user_id"] = userID
		}
	}
	return e
}
