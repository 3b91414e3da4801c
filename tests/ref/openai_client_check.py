#!/usr/bin/env python3
"""The official `openai` Python client talks to `puzzle serve` unchanged.

usage: openai_client_check.py BASE_URL API_KEY   (e.g. http://127.0.0.1:8080/v1)
Lists the model, runs a chat completion, a text completion, and both
streamed (with usage), with n=2, stop and logprobs. Exit status 0 when all hold.
"""
import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
model = client.models.list().data[0].id
msgs = [{"role": "user", "content": "What is the capital of France?"}]

r = client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0)
text = r.choices[0].message.content
assert r.choices[0].finish_reason in ("stop", "length"), r
assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 0, r.usage

parts, usage, roles = [], None, 0
for ch in client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True}):
    if ch.usage:
        usage = ch.usage
    for c in ch.choices:
        roles += c.delta.role == "assistant"
        parts.append(c.delta.content or "")
assert "".join(parts) == text, (parts, text)
assert roles == 1 and usage and usage.completion_tokens == r.usage.completion_tokens, (roles, usage)

r = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=0.8, seed=5, n=2,
                                   logprobs=True, top_logprobs=3)
assert len(r.choices) == 2 and all(len(c.logprobs.content) >= 1 for c in r.choices), r
assert all(len(t.top_logprobs) == 3 for c in r.choices for t in c.logprobs.content), r

c = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0, logprobs=2)
assert c.choices[0].logprobs and len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens, c
s = "".join(x.choices[0].text for x in client.completions.create(model=model, prompt="Once upon a time",
                                                                  max_tokens=10, temperature=0, stream=True))
assert s == c.choices[0].text, (s, c.choices[0].text)

try:
    client.completions.create(model=model, prompt="x", max_tokens=10, temperature=5)
    raise AssertionError("temperature 5 accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400
bad = openai.OpenAI(base_url=base, api_key="wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError:
    pass
print("openai client: ok")
