# Sourced by the project scripts: where tools and build outputs live (outside the clone,
# so a second run on the same machine is warm).
export RECACHED_TOOLS="${RECACHED_TOOLS:-$HOME/.cache/recached-tools}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/recached-target}"
export PATH="$HOME/.cargo/bin:$RECACHED_TOOLS/venv/bin:$RECACHED_TOOLS/node/node_modules/.bin:$PATH"
export NODE_PATH="$RECACHED_TOOLS/node/node_modules${NODE_PATH:+:$NODE_PATH}"
