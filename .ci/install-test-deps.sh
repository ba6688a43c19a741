#!/usr/bin/env bash
# System packages the tests need beyond the venv: Debian's Chromium and ChromeDriver for
# the browser test of the Dagster UI, PostgreSQL for the DuckLake catalog of many writers
# (tests/integration/conftest.py starts it on loopback), and bubblewrap, the sandbox code
# verification runs model-written code in. Idempotent; needs root (CI and dev machines are).
set -euo pipefail
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "bubblewrap missing and cannot be installed here: code verification will fail, its tests skip" >&2
  fi
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "chromium/chromedriver missing and cannot be installed here: the UI test will skip" >&2
  fi
fi
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "postgresql missing and cannot be installed here: the PostgreSQL catalog tests will skip" >&2
  fi
fi
