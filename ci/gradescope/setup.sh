#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: what the students'
# builds need: add the compilers and libraries that your course's submissions use. tprox is a
# binary in the zip and needs nothing installed, if it was built on a system whose glibc is no
# newer than the image's (or built for x86_64-unknown-linux-musl).
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential
