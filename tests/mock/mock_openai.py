#!/usr/bin/env python3
"""Mock OpenAI-compatible chat completions server for rerankd's LLM rerankers, python3
stdlib only (ThreadingHTTPServer, HTTP/1.1 keep-alive).

    python3 tests/mock/mock_openai.py --port 0 [--key K]   # prints "listening on 127.0.0.1:PORT"

POST /v1/chat/completions (also /chat/completions) answers in the OpenAI chat completion
format: choices[0].message.content, finish_reason, usage {prompt_tokens, completion_tokens,
total_tokens}, and choices[0].logprobs when the request asks for logprobs.

It recognises the prompt and answers in kind, scoring by keyword overlap: the share of the
query's distinct words (\\w+, lower-cased) found in the document, 0..1.
  lancedb    system "You are an expert relevance ranker..." + user "Query: Q Docs: [python
             list]" (strings, or {'id', 'content'} dicts): {"documents": [{"id"?, "content",
             "relevance_score"}]} sorted by score desc (ties: prompt order)
  rankgpt    system "You are RankGPT..." + "[k] passage" turns: "[3] > [1] > [2]"
  yes/no     user "...Answer yes or no.": "yes" when 0.05 + 0.9*share >= 0.5; with logprobs,
             top_logprobs yes = log(p), no = log(1 - p) where p = 0.05 + 0.9*share
  pointwise  user "Query: Q\\n\\nDocument: D": {"relevance_score": share}
Token counts: prompt = words in all messages, completion = words in the answer (min 1).

Misbehaviour on demand: fault tokens in the model name or the x-mock-fault header, joined
with "+" or "," (e.g. model "slow:50+prose"). A token ending in "-some" applies only to calls
whose prompt mentions the word "flaky" (e.g. "fail-some", "malformed-some", "429-some").
  slow:MS     answer after MS milliseconds         429       429 + Retry-After: 1
  500         500 error                            fail      500 error (alias)
  flaky:N     the first N calls with this model/fault string get 503, then normal answers
  malformed   200, content the template cannot read (cut-off JSON / no number / no ids)
  badjson     200 whose body is not JSON at all
  prose       the answer wrapped in prose and a ```json fence
  strings     scores as strings ("0.5")            range     scores x 10 (out of [0,1])
  noids       lancedb: items carry no "id"         shuffle   lancedb: items in prompt order
  messy       lancedb: last document missing, first duplicated, one unknown extra item;
              rankgpt: a duplicate, an out-of-range id and the last id missing
  nologprobs  yes/no without logprobs              nousage   no usage object
  empty       200 with choices: []
Control: GET /stats -> {requests, inflight, max_inflight}; POST /stats/reset (also
GET /_mock/requests -> [{path, headers, json}] and POST /_mock/reset: both reset everything).
With --key K, requests must carry "Authorization: Bearer K" (else 401, OpenAI's error shape).
"""
import ast, json, math, re, sys, threading, time

import mock_common
from mock_common import Reply, words

LOCK = threading.Lock()
STATS = {"requests": 0, "inflight": 0, "max_inflight": 0}
LOG, FLAKY = [], {}
KEY = None


def share(q, d):
    qw = set(words(q))
    return round(len(qw & set(words(d))) / len(qw), 6) if qw else 0.0


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return ""


def oa_error(status, msg, etype="invalid_request_error", code=None):
    raise Reply(status, {"error": {"message": msg, "type": etype, "param": None, "code": code}})


# ---------------------------------------------------------------------------------------
# prompt recognition


def classify(msgs):
    """-> (kind, query, docs) where docs = [(id_or_None, text)] in prompt order."""
    system = text_of(msgs[0].get("content")) if msgs and msgs[0].get("role") == "system" else ""
    users = [text_of(m.get("content")) for m in msgs if m.get("role") == "user"]
    if system.startswith("You are RankGPT") or any(re.match(r"^\[\d+\] ", u) for u in users[1:2]):
        q = ""
        m = re.search(r"relevance to query: (.*)\.\Z", users[0], re.S) if users else None
        if m:
            q = m.group(1)
        docs = []
        for u in users:
            pm = re.match(r"^\[(\d+)\] (.*)\Z", u, re.S)
            if pm:
                docs.append((int(pm.group(1)), pm.group(2)))
        return "rankgpt", q, docs
    user = users[-1] if users else ""
    if user.startswith("Query: ") and " Docs: [" in user:
        start = 0
        while True:
            i = user.find(" Docs: [", start)
            if i < 0:
                break
            try:
                items = ast.literal_eval(user[i + len(" Docs: "):])
                q = user[len("Query: "):i]
                docs = []
                for k, it in enumerate(items):
                    if isinstance(it, dict):
                        docs.append((it.get("id"), str(it.get("content", ""))))
                    else:
                        docs.append((None, str(it)))
                return "lancedb", q, docs
            except (ValueError, SyntaxError):
                start = i + 1
    m = re.match(r"^Query: (.*?)\n\nDocument: (.*)\Z", user, re.S)
    if m:
        q, d = m.group(1), m.group(2)
        if "Answer yes or no" in user or '"yes" or "no"' in system:
            d = re.sub(r"\n\nIs the document relevant to the query\? Answer yes or no\.\Z", "", d)
            return "yesno", q, [(None, d)]
        return "pointwise", q, [(None, d)]
    return None, None, None


# ---------------------------------------------------------------------------------------
# answers


def answer(kind, q, docs, faults, want_logprobs):
    """-> (content, logprobs_or_None)"""
    fmt_score = (lambda s: str(s)) if "strings" in faults else (lambda s: s)
    scale = 10 if "range" in faults else 1
    if kind == "rankgpt":
        order = sorted(range(len(docs)), key=lambda k: (-share(q, docs[k][1]), k))
        ids = [docs[k][0] for k in order]
        if "malformed" in faults:
            return "I am sorry, I cannot rank these passages.", None
        if "messy" in faults and len(ids) >= 2:
            ids = ids[:-1] + [ids[0], len(docs) + 7]
        text = " > ".join("[%d]" % i for i in ids)
        if "prose" in faults:
            text = "Here are the %d passages ranked by relevance: %s. I hope this helps!" % (len(docs), text)
        return text, None
    if kind == "lancedb":
        items = []
        for k, (did, text) in enumerate(docs):
            it = {}
            if did is not None and "noids" not in faults:
                it["id"] = did
            it["content"] = text
            it["relevance_score"] = fmt_score(share(q, text) * scale)
            items.append((share(q, text), k, it))
        if "shuffle" not in faults:
            items.sort(key=lambda x: (-x[0], x[1]))
        out = [x[2] for x in items]
        if "messy" in faults and out:
            last = len(docs) - 1  # the last document of the prompt goes missing
            out = [x[2] for x in items if x[1] != last]
            if out:
                out.append(dict(out[0]))  # the top one twice
            out.append({"id": 9999, "content": "a document nobody sent", "relevance_score": 0.99})
        if "malformed" in faults:
            return json.dumps({"documents": out})[:-7], None
        return wrap(json.dumps({"documents": out}), faults), None
    if kind == "yesno":
        p = 0.05 + 0.9 * share(q, docs[0][1])
        tok = "yes" if p >= 0.5 else "no"
        if "malformed" in faults:
            return "Maybe.", None
        text = tok
        if "prose" in faults:
            text = "Well, %s, I believe so." % tok.capitalize()
        lp = None
        if want_logprobs and "nologprobs" not in faults:
            top = [{"token": "yes", "logprob": math.log(p), "bytes": list(b"yes")},
                   {"token": "no", "logprob": math.log(1 - p), "bytes": list(b"no")}]
            top.sort(key=lambda t: -t["logprob"])
            lp = {"content": [{"token": tok, "logprob": math.log(p if tok == "yes" else 1 - p),
                               "bytes": list(tok.encode()), "top_logprobs": top}], "refusal": None}
        return text, lp
    # pointwise JSON
    s = share(q, docs[0][1])
    if "malformed" in faults:
        return "This document seems somewhat relevant to the query.", None
    return wrap(json.dumps({"relevance_score": fmt_score(s * scale)}), faults), None


def wrap(js, faults):
    if "prose" in faults:
        return "Sure! Here is my assessment:\n```json\n%s\n```\nLet me know if you need anything else." % js
    return js


# ---------------------------------------------------------------------------------------
# HTTP


def fault_tokens(model, header):
    toks = set()
    for src in (model or "", header or ""):
        for t in re.split(r"[+,\s]+", src):
            if t:
                toks.add(t.lower())
    return toks


class Handler(mock_common.Handler):
    def send(self, status, body, headers=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # headers and body in one write
        self._headers_buffer.append(b"\r\n")
        data = b"".join(self._headers_buffer) + raw
        self._headers_buffer = []
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/stats":
            with LOCK:
                return self.send(200, dict(STATS))
        if self.path == "/_mock/requests":
            with LOCK:
                return self.send(200, list(LOG))
        self.send(404, {"error": {"message": "no route %s" % self.path, "type": "not_found"}})

    def do_POST(self):
        body = self.read_body()
        if self.path in ("/stats/reset", "/_mock/reset"):
            with LOCK:
                STATS.update(requests=0, inflight=0, max_inflight=0)
                LOG.clear()
                FLAKY.clear()
            return self.send(200, {"ok": True})
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return self.send(404, {"error": {"message": "no route %s" % self.path, "type": "not_found"}})
        with LOCK:
            STATS["requests"] += 1
            STATS["inflight"] += 1
            STATS["max_inflight"] = max(STATS["max_inflight"], STATS["inflight"])
        try:
            status, out, headers = self.chat(body)
        except Reply as r:
            status, out, headers = r.status, r.body, r.headers
        finally:
            with LOCK:
                STATS["inflight"] -= 1
        self.send(status, out, headers)

    def chat(self, body):
        try:
            j = json.loads(body or b"null")
        except ValueError:
            oa_error(400, "We could not parse the JSON body of your request.")
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            if len(LOG) < 5000:
                LOG.append({"path": self.path, "headers": hdrs, "json": j})
        if not isinstance(j, dict):
            oa_error(400, "request body must be a JSON object")
        if KEY is not None and hdrs.get("authorization") != "Bearer " + KEY:
            oa_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        model, msgs = j.get("model"), j.get("messages")
        if not isinstance(model, str) or not isinstance(msgs, list) or not msgs:
            oa_error(400, "model and messages are required")
        faults = fault_tokens(model, hdrs.get("x-mock-fault"))
        prompt = "\n".join(text_of(m.get("content")) for m in msgs if isinstance(m, dict))
        flaky_call = "flaky" in words(prompt)
        active = set()
        for f in faults:
            if f.endswith("-some"):
                if flaky_call:
                    active.add(f[:-5])
            else:
                active.add(f)
        for f in active:
            if f.startswith("slow:"):
                time.sleep(float(f[5:]) / 1000.0)
        for f in active:
            if f.startswith("flaky:"):
                key = model + "|" + (hdrs.get("x-mock-fault") or "")
                with LOCK:
                    FLAKY[key] = FLAKY.get(key, 0) + 1
                    n = FLAKY[key]
                if n <= int(f[6:]):
                    raise Reply(503, {"error": {"message": "The server is overloaded", "type": "server_error"}})
        if "429" in active:
            raise Reply(429, {"error": {"message": "Rate limit reached for requests", "type": "requests",
                                        "param": None, "code": "rate_limit_exceeded"}}, {"Retry-After": "1"})
        if "500" in active or "fail" in active:
            raise Reply(500, {"error": {"message": "The server had an error while processing your request.",
                                        "type": "server_error"}})
        if "badjson" in active:
            return 200, b'{"id": "chatcmpl-mock", "choices": [{"message": {"content": ', {}
        kind, q, docs = classify(msgs)
        if kind is None:
            oa_error(400, "mock: unrecognised prompt")
        content, lp = answer(kind, q, docs, active, bool(j.get("logprobs")))
        pt = sum(len(words(text_of(m.get("content")))) for m in msgs if isinstance(m, dict))
        ct = max(1, len(words(content)))
        with LOCK:
            seq = STATS["requests"]
        out = {
            "id": "chatcmpl-mock-%d" % seq, "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": lp, "finish_reason": "stop"}],
        }
        if "empty" in active:
            out["choices"] = []
        if "nousage" not in active:
            out["usage"] = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
        return 200, out, {}


class Server(mock_common.Server):
    request_queue_size = 256


def main():
    def configure(a):
        global KEY
        KEY = a.key
    mock_common.main(__doc__, Server, Handler, lambda ap: ap.add_argument("--key", default=None), configure)


if __name__ == "__main__":
    sys.exit(main())
