package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is one row of signing_keys: a JWT signing key whose private
// half is sealed by authz/keys (storage never sees it in clear).
type SigningKey struct {
	KID        string
	Alg        string
	PrivateKey []byte // AES-256-GCM sealed, AAD = KID
	PublicJWK  []byte // RFC 7517 JSON of the public key
	CreatedAt  time.Time
	ActiveFrom time.Time  // published from creation, signs from ActiveFrom
	RetireAt   *time.Time // stops signing; nil: not scheduled
	RemoveAt   *time.Time // leaves the JWKS; nil: not scheduled
}

// signingKeysLock is the pg_advisory_xact_lock key that serializes the
// writes which must see every other writer's key first (first key, rotation).
// Any constant will do as long as nothing else uses it: "mcpauth.k" in ASCII.
const signingKeysLock int64 = 0x6d63_7061_7574_686b

const signingKeyColumns = `kid, alg, private_key, public_jwk, created_at, active_from, retire_at, remove_at`

// SigningKeys returns every key not yet removed at now (remove_at unset or
// after now), oldest first.
func (db *DB) SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	rows, err := db.q(ctx).Query(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys
		WHERE remove_at IS NULL OR remove_at > $1
		ORDER BY active_from, created_at, kid`, now)
	if err != nil {
		return nil, dbErr("list signing keys", err)
	}
	ks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SigningKey, error) {
		var k SigningKey
		err := row.Scan(&k.KID, &k.Alg, &k.PrivateKey, &k.PublicJWK, &k.CreatedAt, &k.ActiveFrom, &k.RetireAt, &k.RemoveAt)
		return k, err
	})
	if err != nil {
		return nil, dbErr("list signing keys", err)
	}
	return ks, nil
}

// InsertFirstSigningKey inserts k unless some key signs at now (active_from
// not after now and retire_at unset or after now), and reports whether it
// did. Replicas starting together on an empty table race here: the advisory
// lock makes them take turns, and each re-checks under it with a fresh
// snapshot, so exactly one first key is created.
func (db *DB) InsertFirstSigningKey(ctx context.Context, k SigningKey, now time.Time) (bool, error) {
	var inserted bool
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, signingKeysLock); err != nil {
			return err
		}
		// READ COMMITTED: this statement's snapshot is taken after the lock
		// is held, so it sees a key committed by the previous holder.
		tag, err := tx.Exec(ctx, `INSERT INTO signing_keys (`+signingKeyColumns+`)
			SELECT $1::text, $2::text, $3::bytea, $4::jsonb, $5::timestamptz, $6::timestamptz,
				$7::timestamptz, $8::timestamptz
			WHERE NOT EXISTS (SELECT 1 FROM signing_keys
				WHERE active_from <= $9 AND (retire_at IS NULL OR retire_at > $9))`,
			k.KID, k.Alg, k.PrivateKey, k.PublicJWK, k.CreatedAt, k.ActiveFrom, k.RetireAt, k.RemoveAt, now)
		if err != nil {
			return err
		}
		inserted = tag.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return false, dbErr(fmt.Sprintf("insert first signing key %s", k.KID), err)
	}
	return inserted, nil
}

// RotateSigningKey inserts k and, in the same transaction, retires every
// other key that would still sign at k.ActiveFrom: its retire_at becomes
// k.ActiveFrom and its remove_at removeAt. A key scheduled to start after
// k.ActiveFrom is superseded the same way and never signs.
func (db *DB) RotateSigningKey(ctx context.Context, k SigningKey, removeAt time.Time) error {
	err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		// Concurrent rotations take turns, so each sees the other's key.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, signingKeysLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retire_at = $2, remove_at = $3
			WHERE kid <> $1 AND (retire_at IS NULL OR retire_at > $2)`,
			k.KID, k.ActiveFrom, removeAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO signing_keys (`+signingKeyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			k.KID, k.Alg, k.PrivateKey, k.PublicJWK, k.CreatedAt, k.ActiveFrom, k.RetireAt, k.RemoveAt)
		return err
	})
	if err != nil {
		return dbErr(fmt.Sprintf("rotate to signing key %s", k.KID), err)
	}
	return nil
}

// DeleteRemovedSigningKeys deletes keys whose remove_at is not after now
// and returns how many it deleted.
func (db *DB) DeleteRemovedSigningKeys(ctx context.Context, now time.Time) (int64, error) {
	tag, err := db.q(ctx).Exec(ctx, `DELETE FROM signing_keys WHERE remove_at <= $1`, now)
	if err != nil {
		return 0, dbErr("delete removed signing keys", err)
	}
	return tag.RowsAffected(), nil
}
