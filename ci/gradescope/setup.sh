#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image: what the students'
# builds need: add the compilers and libraries that your course's submissions use. tprox is a
# binary in the zip and needs nothing installed, if it was built on a system whose glibc is no
# newer than the image's (or built for x86_64-unknown-linux-musl).
set -euo pipefail
apt-get update
# bubblewrap: tprox's sandbox around the build and the proxy, where the container allows
# namespaces; otherwise tprox grades with a warning, and Gradescope's fresh container per
# submission is the only box.
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential bubblewrap
