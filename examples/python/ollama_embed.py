"""Embed sentences with the `ollama` client and rank them by similarity:  python ollama_embed.py MODEL"""

from __future__ import annotations

import ollama

from _model import host, model

client = ollama.Client(host=host())
query = "How do plants make food?"
documents = ["Photosynthesis turns light, water and carbon dioxide into sugar.",
             "The stock market fell sharply on Monday.",
             "Leaves contain chlorophyll, which captures sunlight."]
result = client.embed(model(), [query, *documents])
query_vector, *document_vectors = result.embeddings  # normalised: the dot product is the cosine
scores = [sum(q * d for q, d in zip(query_vector, vector)) for vector in document_vectors]
print(f"{len(result.embeddings)} vectors of {len(query_vector)} dimensions")
for score, document in sorted(zip(scores, documents), reverse=True):
    print(f"{score:.3f}  {document}")
