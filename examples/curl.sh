#!/usr/bin/env bash
# corral's HTTP API with curl: the Ollama endpoints and the OpenAI-compatible /v1.
#
#   bash curl.sh MODEL          (or CORRAL_MODEL=MODEL bash curl.sh)
#
# The server is $OLLAMA_HOST (default 127.0.0.1:11434); start one with `corral serve`.
set -euo pipefail

MODEL=${1:-${CORRAL_MODEL:?usage: bash curl.sh MODEL (or set CORRAL_MODEL)}}
HOST=${OLLAMA_HOST:-127.0.0.1:11434}
case $HOST in http://*|https://*) ;; *) HOST=http://$HOST ;; esac
HOST=${HOST%/}

show() { printf '\n# %s\n' "$*"; }

show "the server and its models"
curl -fsS "$HOST/api/version"; echo
curl -fsS "$HOST/api/tags"; echo

show "a completion in one object (stream false)"
curl -fsS "$HOST/api/generate" -d '{
  "model": "'"$MODEL"'", "prompt": "Why is the sky blue? One sentence.", "stream": false,
  "options": {"temperature": 0, "num_predict": 48}
}'; echo

show "a chat, streamed: one JSON object per line until done is true"
curl -fsS -N "$HOST/api/chat" -d '{
  "model": "'"$MODEL"'", "messages": [{"role": "user", "content": "Name three fruits."}],
  "options": {"temperature": 0, "num_predict": 32}
}'

show "structured output: format is a JSON schema"
curl -fsS "$HOST/api/chat" -d '{
  "model": "'"$MODEL"'", "stream": false,
  "messages": [{"role": "user", "content": "Tell me about Paris as JSON."}],
  "format": {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
             "required": ["city", "country"]},
  "options": {"temperature": 0, "num_predict": 64}
}'; echo

show "embeddings (normalised vectors)"
curl -fsS "$HOST/api/embed" -d '{"model": "'"$MODEL"'", "input": ["first sentence", "second sentence"]}' \
  | cut -c1-300; echo " ..."

show "OpenAI-compatible: chat completion (any Authorization header is accepted)"
curl -fsS "$HOST/v1/chat/completions" -H "Authorization: Bearer anything" -H "Content-Type: application/json" -d '{
  "model": "'"$MODEL"'", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16, "temperature": 0
}'; echo

show "OpenAI-compatible: server-sent events ending with data: [DONE]"
curl -fsS -N "$HOST/v1/chat/completions" -H "Content-Type: application/json" -d '{
  "model": "'"$MODEL"'", "messages": [{"role": "user", "content": "Count to three."}], "max_tokens": 16,
  "temperature": 0, "stream": true, "stream_options": {"include_usage": true}
}'

show "OpenAI-compatible: models and embeddings"
curl -fsS "$HOST/v1/models"; echo
curl -fsS "$HOST/v1/embeddings" -H "Content-Type: application/json" \
  -d '{"model": "'"$MODEL"'", "input": "hello", "dimensions": 4}'; echo

show "which models are loaded, and until when"
curl -fsS "$HOST/api/ps"; echo
