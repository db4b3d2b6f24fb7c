#!/usr/bin/env bash
# Build and install pgvector from its source release into the PostgreSQL that `pg_config`
# names, for bench/pgvector_bench.py (Debian carries no pgvector package for PG 15 here).
#
#   bench/pgvector_build.sh                    # git clone the release tag (needs internet)
#   bench/pgvector_build.sh /path/to/pgvector  # a source dir, a git dir or a .tar.gz
#
# Env: PGVECTOR_VERSION (a release tag, default v0.8.6), PG_CONFIG (default
# pg_config). Needs root for apt-get and for `make install` into the server's lib dir.
set -euo pipefail

VERSION="${PGVECTOR_VERSION:-v0.8.6}"
PG_CONFIG="${PG_CONFIG:-pg_config}"
SOURCE="${1:-}"

major="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
if [ ! -f "$("$PG_CONFIG" --includedir-server)/postgres.h" ]; then
    apt-get install -y "postgresql-server-dev-${major}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
src="$work/pgvector"
mkdir -p "$src"
if [ -z "$SOURCE" ]; then
    git clone --depth 1 --branch "$VERSION" https://github.com/pgvector/pgvector "$src"
elif [ -f "$SOURCE" ]; then
    tar -xzf "$SOURCE" -C "$src" --strip-components=1
elif [ -f "$SOURCE/HEAD" ] && [ -d "$SOURCE/objects" ]; then
    git --git-dir="$SOURCE" archive "$VERSION" | tar -x -C "$src"
else
    cp -a "$SOURCE/." "$src/"
fi

make -C "$src" PG_CONFIG="$PG_CONFIG" -j"$(nproc)"
make -C "$src" PG_CONFIG="$PG_CONFIG" install

libdir="$("$PG_CONFIG" --pkglibdir)"
extdir="$("$PG_CONFIG" --sharedir)/extension"
test -f "$libdir/vector.so" && test -f "$extdir/vector.control"
echo "pgvector $(grep default_version "$extdir/vector.control" | cut -d"'" -f2) installed: $libdir/vector.so"
