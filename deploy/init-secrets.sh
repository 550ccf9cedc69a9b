#!/bin/sh
# Writes the secrets compose.yaml reads, once: deploy/secrets/ is git-ignored
# and never committed. Re-running keeps existing files (a new MCPAUTH_SECRET
# would make the stored signing keys unreadable).
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
rand() { head -c 32 /dev/urandom | base64 | tr -d '\n=+/' ; }
[ -s "$dir/mcpauth_secret" ] || rand > "$dir/mcpauth_secret"
[ -s "$dir/postgres_password" ] || rand > "$dir/postgres_password"
[ -s "$dir/database_url" ] ||
  printf 'postgres://mcpauth:%s@postgres:5432/mcpauth?sslmode=disable&pool_max_conns=16\n' \
    "$(cat "$dir/postgres_password")" > "$dir/database_url"
# The containers run as other users than you and see only the files (bind
# mounts): the files are readable, the directory closed to other local users.
chmod 644 "$dir"/*
chmod 700 "$dir"
echo "secrets in $dir (back up mcpauth_secret: without it the signing keys cannot be read)"
