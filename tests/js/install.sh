#!/bin/sh
# Installs tus-js-client (pinned in package.json) into tests/js/node_modules for the client tests.
set -e
cd "$(dirname "$0")"
[ -d node_modules/tus-js-client ] || npm install --no-audit --no-fund --no-package-lock --silent
