#!/usr/bin/env bash
# Builds a throw-away package that depends on this repository by `file://` URL and version
# (`from: "1.0.0"`), as a user's Package.swift would, and runs its forward-pass check. SwiftPM
# refuses unsafe build flags in packages resolved by version, so this proves the library product
# has none. It uses the committed HEAD (a clone), tagged 1.0.N with N = the commit count, so each
# new commit is a new version and the reused build folder never serves a stale checkout.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$root/.build/consumer"
reference="${1:-$root/../shared/reference}"
# The clone, the package and SwiftPM's cached checkouts are made anew (a cached clone would not
# see the new tag); compiled objects in $work/build are reused.
rm -rf "$work/QLoRA" "$work/pkg" "$work/build/repositories" "$work/build/checkouts" "$work/build/workspace-state.json"
mkdir -p "$work/pkg/Sources/consumer"
git clone -q "$root" "$work/QLoRA"
version="1.0.$(git -C "$work/QLoRA" rev-list --count HEAD)"
git -C "$work/QLoRA" tag -f "$version" >/dev/null
sed -e "s|@QLORA_URL@|file://$work/QLoRA|" -e "s|@QLORA_NAME@|QLoRA|" \
  "$root/Tests/Consumer/Package.swift.template" > "$work/pkg/Package.swift"
cp "$root/Tests/Consumer/main.swift" "$work/pkg/Sources/consumer/main.swift"
swift build --package-path "$work/pkg" --scratch-path "$work/build" -c release --product consumer 2>&1 | tail -n 3
"$work/build/release/consumer" "$reference"
