#!/bin/sh
# Writes the catalog documents of the example site (examples/site) to
# standard output: an app and one successful build of its default version.
# docs/catalog.md describes the format.
#
#   sh examples/catalog.sh WORKSPACE_ID APP_ID > catalog.jsonl
#   deployd catalog import catalog.jsonl
#
# Ids come from `deployd ids new` (DEPLOYD names the binary, default
# `deployd` on the PATH).
set -eu
ws=${1:?usage: catalog.sh WORKSPACE_ID APP_ID}
app=${2:?usage: catalog.sh WORKSPACE_ID APP_ID}
deployd=${DEPLOYD:-deployd}
version=$("$deployd" ids new ver)
build=$("$deployd" ids new bld)
set -- $("$deployd" ids new evt --count 2)
site=$(cd "$(dirname "$0")/site" && pwd)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"type":"entity.upserted","eventId":"%s","occurredAt":"%s","workspaceId":"%s","entity":{"id":"%s","kind":"app","name":"example","defaultVersionId":"%s","autoDeploy":false}}\n' \
  "$1" "$now" "$ws" "$app" "$version"
printf '{"type":"build.succeeded","eventId":"%s","occurredAt":"%s","workspaceId":"%s","build":{"id":"%s","entityId":"%s","versionId":"%s","artifactDir":"%s","branch":"main"}}\n' \
  "$2" "$now" "$ws" "$build" "$app" "$version" "$site"
