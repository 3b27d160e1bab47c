#!/usr/bin/env bash
# The main job on a laptop: two tiny models on CPU behind one OpenAI endpoint, a real chat completion.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${MODELFLEET_DEMO_PORT:-8000}
MODEL_DIR=.modelfleet/models/tiny-llama

if [ ! -f "$MODEL_DIR/config.json" ]; then
  echo "== building a tiny random Llama with a locally trained tokenizer in $MODEL_DIR"
  "$BIN/modelfleet" tiny-model "$MODEL_DIR"
fi
echo "== modelfleet up examples/local/tiny-fleet.yaml"
"$BIN/modelfleet" up examples/local/tiny-fleet.yaml --port "$PORT"
echo
echo "== one chat completion through the unified endpoint, with the openai SDK"
"$BIN/python" scripts/demo_chat.py "http://127.0.0.1:$PORT/v1" chat
echo
echo "The fleet keeps running: try 'modelfleet status', or any OpenAI client at http://127.0.0.1:$PORT/v1"
echo "Stop it with: $BIN/modelfleet down"
