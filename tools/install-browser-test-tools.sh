#!/usr/bin/env bash
# Test tools for tests/service/test_browser_sdk.py: Debian's Chromium and the official OpenAI JS
# SDK from npm (pinned in tools/browser/package-lock.json). The test never installs anything;
# it skips (fails in CI) when these are missing.
set -euo pipefail
cd "$(dirname "$0")/browser"
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
npm ci --no-audit --no-fund --ignore-scripts
