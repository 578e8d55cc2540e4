"""Complete a prompt with the `ollama` client, whole and streamed:  python ollama_generate.py MODEL"""

from __future__ import annotations

import ollama

from _model import host, model

client = ollama.Client(host=host())
options = {"temperature": 0, "seed": 42, "num_predict": 48}
result = client.generate(model(), "Write a haiku about a lighthouse.", options=options)
print(result.response)
print(f"[{result.eval_count} tokens in {result.eval_duration / 1e9:.2f} s]")

for part in client.generate(model(), "List three primary colours.", stream=True, options=options):
    print(part.response, end="", flush=True)
print()
