#!/usr/bin/env bash
# Protobuf check: installs the pinned code-generation tools into .tools/bin,
# lints and format-checks proto/, regenerates the Go code into a temporary
# directory and fails if it differs from gen/ in the working tree.
#
# Usage:
#   .ci/gen.sh          check only (used by .ci/run)
#   .ci/gen.sh --write  regenerate gen/ in place, then run the check
#
# Requires only Go (and network access to the Go module proxy on the first
# run). Works whether or not gen/ has been committed yet, because it compares
# against the working tree, not against git.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

# Pinned tool versions. Bump here; the next run reinstalls automatically.
BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

TOOLS_BIN="$ROOT/.tools/bin"
mkdir -p "$TOOLS_BIN"

# install_tool NAME PACKAGE VERSION
# Installs PACKAGE@VERSION into $TOOLS_BIN unless the binary is already there
# and a stamp file records that exact version (and Go toolchain).
install_tool() {
  local name="$1" pkg="$2" version="$3"
  local bin="$TOOLS_BIN/$name"
  local stamp="$TOOLS_BIN/.$name.stamp"
  local want="$pkg@$version $(go env GOVERSION)"
  if [[ -x "$bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "installing $pkg@$version into .tools/bin"
  rm -f "$stamp"
  GOBIN="$TOOLS_BIN" go install "$pkg@$version"
  printf '%s\n' "$want" >"$stamp"
}

install_tool buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

# buf.gen.yaml uses `local:` plugins; make sure ours are found first.
export PATH="$TOOLS_BIN:$PATH"

if [[ "${1:-}" == "--write" ]]; then
  echo "regenerating gen/ in place"
  buf format -w
  buf generate
fi

echo "buf lint"
buf lint

echo "buf format check"
if ! buf format -d --exit-code; then
  echo "proto files are not buf-formatted; run: .ci/gen.sh --write" >&2
  exit 1
fi

echo "buf generate (into temp dir) and compare with gen/"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
buf generate -o "$tmp"
if [[ ! -d gen ]]; then
  echo "gen/ does not exist; run: .ci/gen.sh --write" >&2
  exit 1
fi
if ! diff -ru gen "$tmp/gen"; then
  echo >&2
  echo "generated code in gen/ is stale (diff above: gen/ vs fresh output);" >&2
  echo "run: .ci/gen.sh --write" >&2
  exit 1
fi
echo "gen/ is up to date"
