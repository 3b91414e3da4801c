#!/usr/bin/env bash
# labels: cpu
# BOS and chat formats through the real `puzzle serve` on a small random test model whose
# tokenizer config says add_bos_token (SmolLM2's tokenizer: BOS is <|im_start|>, which every
# ChatML turn starts with):
# - a string prompt gets BOS: it is answered exactly as the token list [BOS] + its tokens;
# - a token-list prompt is used verbatim (prompt_tokens = its length, no BOS added);
# - a rendered chat that already starts with BOS does not get a second one;
# - a chat template of no known family stops the server at start with a message naming
#   --chat-template, and --chat-template chatml then serves it.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
here="$(cd "$(dirname "$0")" && pwd)"
"$MAKE" "$tmp/tm" --variant 0 --seed 3 --tokenizer "$here/data/smollm2_tokenizer/tokenizer.json" >/dev/null
check "make_test_model" '[ -f "$tmp/tm/config.json" ]'
# config edits: add_bos_token on; a copy with microsoft/phi-4's template
python3 - "$tmp/tm/tokenizer_config.json" "$here/ref/chat_templates/microsoft-phi-4.jinja" "$tmp/tm_phi4" <<'EOF'
import json, shutil, sys
cfg_path, phi4, other = sys.argv[1:4]
cfg = json.load(open(cfg_path))
cfg["add_bos_token"] = True
json.dump(cfg, open(cfg_path, "w"))
shutil.copytree(cfg_path.rsplit("/", 1)[0], other)
cfg["chat_template"] = open(phi4).read()
json.dump(cfg, open(other + "/tokenizer_config.json", "w"))
EOF

start() {  # start MODEL [options...]: sets srv and port ("" when it did not come up)
    # removed here, before the fork: the background job truncates it only once it runs, and the
    # last server's "listening on" line must not be read as this one's
    rm -f "$tmp/server.err"
    "$BIN" serve "$@" --port 0 --threads 2 --max-seqs 4 --ctx 256 2>"$tmp/server.err" &
    srv=$!
    port=
    for _ in $(seq 300); do
        port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/server.err" 2>/dev/null)
        [ -n "$port" ] && grep -q "ready in" "$tmp/server.err" && break
        kill -0 $srv 2>/dev/null || { port=; break; }
        sleep 0.1
    done
}
stop() {
    kill -TERM $srv 2>/dev/null
    for _ in $(seq 100); do kill -0 $srv 2>/dev/null || break; sleep 0.1; done
    kill -9 $srv 2>/dev/null
    wait $srv 2>/dev/null
}

start "$tmp/tm"
check "server ready" '[ -n "$port" ]'
if [ -n "$port" ]; then
    check "chat format logged" 'grep -q "chat format chatml" "$tmp/server.err"'
    text_ids=$(printf 'The capital of France is' | "$BIN" tokenize "$tmp/tm" --ids | tr '\n' ',' | sed 's/,$//')
    chat_text=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
    chat_ids=$(printf '%s' "$chat_text" | "$BIN" tokenize "$tmp/tm" --ids | tr '\n' ',' | sed 's/,$//')
    python3 - "$port" "$text_ids" "$chat_ids" <<'EOF'
import json, sys, urllib.request
port, text_ids, chat_ids = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], [int(x) for x in sys.argv[3].split(",")]
BOS = 1  # <|im_start|>
def post(path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))
fails = 0
def check(name, cond, detail=""):
    global fails
    if not cond:
        fails += 1
        print(f"FAIL: {name} {detail}", file=sys.stderr)
base = {"max_tokens": 8, "temperature": 0, "logprobs": 1}
s = post("/v1/completions", dict(base, prompt="The capital of France is"))
t = post("/v1/completions", dict(base, prompt=[BOS] + text_ids))
v = post("/v1/completions", dict(base, prompt=text_ids))
check("text_ids has no BOS", text_ids[0] != BOS, text_ids)
check("string prompt: BOS + its tokens", s["usage"]["prompt_tokens"] == len(text_ids) + 1, s["usage"])
check("string prompt answered as [BOS] + tokens",
      s["choices"][0]["text"] == t["choices"][0]["text"] and
      s["choices"][0]["logprobs"]["token_logprobs"] == t["choices"][0]["logprobs"]["token_logprobs"])
check("token list verbatim", v["usage"]["prompt_tokens"] == len(text_ids), v["usage"])
check("token list [BOS]+ids verbatim", t["usage"]["prompt_tokens"] == len(text_ids) + 1, t["usage"])
check("token list without BOS is a different prompt",
      v["choices"][0]["logprobs"]["token_logprobs"] != t["choices"][0]["logprobs"]["token_logprobs"])
c = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                                  "temperature": 0})
check("chat starts with BOS already: no second one",
      chat_ids[0] == BOS and chat_ids[1] != BOS and c["usage"]["prompt_tokens"] == len(chat_ids),
      (c["usage"], len(chat_ids)))
print(f"bos checks: {fails} failed")
sys.exit(1 if fails else 0)
EOF
    check "BOS through the server" '[ $? -eq 0 ]'
    stop
fi

# a template of no known family: refused at start, with the way out named
start "$tmp/tm_phi4"
check "unknown template: no server" '[ -z "$port" ]'
wait $srv 2>/dev/null
check "unknown template: message names --chat-template" 'grep -q "no family.*--chat-template" "$tmp/server.err"'
start "$tmp/tm_phi4" --chat-template chatml
check "--chat-template chatml serves it" '[ -n "$port" ] && grep -q "chat format chatml" "$tmp/server.err"'
[ -n "$port" ] && stop
start "$tmp/tm" --chat-template vicuna
check "--chat-template with an unknown name: refused" '[ -z "$port" ] && grep -q "vicuna" "$tmp/server.err"'
finish
