"""Calls `verity gateway` with the official `openai` package, as an application would.

Usage: openai_gateway_check.py BASE_URL API_KEY MODEL [QUESTION]

Prints one JSON object with what each call returned (the `verity` objects included), for the
Rust test that started the devnet and the gateway to compare with the chain. Errors are caught
as the package's own exception classes, which shows the gateway's error shape is OpenAI's.
"""

import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
out = {}

if len(sys.argv) > 4:
    # One question only: `openai_gateway_check.py URL KEY MODEL QUESTION`.
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": sys.argv[4]}],
        max_tokens=32,
    )
    print(json.dumps({
        "content": answer.choices[0].message.content,
        "finish_reason": answer.choices[0].finish_reason,
        "verity": answer.model_extra["verity"],
    }))
    sys.exit(0)

out["models"] = [m.id for m in client.models.list()]

chat = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Call me Ishmael."}],
    max_tokens=12,
    temperature=0.8,
    seed=5,
)
out["chat"] = {
    "content": chat.choices[0].message.content,
    "finish_reason": chat.choices[0].finish_reason,
    "usage": chat.usage.model_dump(),
    "verity": chat.model_extra["verity"],
}

text, verity, finish = "", None, None
for chunk in client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "The whale"}],
    max_tokens=10,
    stream=True,
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
    verity = (chunk.model_extra or {}).get("verity", verity)
out["stream"] = {"content": text, "finish_reason": finish, "verity": verity}

completion = client.completions.create(model=model, prompt="The sea was", max_tokens=8)
out["completion"] = {
    "text": completion.choices[0].text,
    "verity": completion.model_extra["verity"],
}

text, verity = "", None
for chunk in client.completions.create(
    model=model, prompt="The whale", max_tokens=8, stream=True
):
    if chunk.choices:
        text += chunk.choices[0].text
    verity = (chunk.model_extra or {}).get("verity", verity)
out["stream_completion"] = {"text": text, "verity": verity}

errors = {}
try:
    client.chat.completions.create(
        model="no-such-model", messages=[{"role": "user", "content": "hi"}]
    )
except openai.NotFoundError as e:
    errors["unknown_model"] = e.body
try:
    client.completions.create(model=model, prompt="The sea", max_tokens=100_000)
except openai.BadRequestError as e:
    errors["too_long"] = e.body
try:
    openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
except openai.AuthenticationError as e:
    errors["wrong_key"] = e.body
out["errors"] = errors

print(json.dumps(out))
