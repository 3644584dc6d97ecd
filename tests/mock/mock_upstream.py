#!/usr/bin/env python3
"""Mock rerank upstreams: the documented wire formats of every provider rerankd speaks
(../shared/reference/provider-apis.md), on one port, python3 stdlib only.

    python3 tests/mock/mock_upstream.py --port 0      # prints "listening on 127.0.0.1:PORT"

Routing: /<provider>/<documented path>, e.g. base_url http://127.0.0.1:PORT/cohere serves
/cohere/v1/rerank and /cohere/v2/rerank. Providers: cohere azure jina voyage together
mixedbread pinecone nim tei infinity vllm llamacpp deepinfra fireworks bedrock sglang
zeroentropy contextual dashscope nimvl vertex watsonx iam (IBM Cloud IAM's token endpoint:
watsonx takes only the tokens it issued), and compat (Cohere shape on /v2/rerank only, for path
probing), custom (examples/providers/my_rerank.lua).

Image documents (jina m0 {image}, vLLM {content: [image_url parts]}, SGLang part lists,
DashScope qwen3-vl {image}, NIM VL passages[].image as a data: URL) score on the words of
the image URL, so https://img.test/red-apple.png matches "red apple".

Scores are deterministic: the share of the query's distinct words found in the document
(0..1); NIM answers logit = 10*share - 5, llama.cpp and raw-score modes the same raw value.
Results are sorted by score desc, index asc, and cut where the API cuts them.
Usage tokens = words(query) * n + sum(words(doc)).

Auth: API key "test-key" in each provider's documented header (Bearer; Pinecone Api-Key;
Bedrock: SigV4 with access key "test-key" / secret "test-secret", fully verified, or a
Bearer Bedrock API key). Wrong key -> 401/403 in the provider's error shape.

Faults, per request: header "x-mock-fault: KIND" or a path prefix /fault/KIND/...
  slow:MS   answer after MS milliseconds (a client that hangs up first: "cancelled": true in the log)
  429:S     429 with Retry-After: S
  500, 503  server error in the provider's shape
  malformed 200 with invalid JSON              truncated Content-Length larger than the body, then close
  reset     close the connection without answering (RST)
  drip      the normal answer, 1 byte per 100 ms
  flaky:N   the first N requests carrying this fault string get 503, then normal answers
  badutf8   500 whose body is not UTF-8 (badutf8:json: JSON whose message holds raw bytes)
  echo      401 quoting every request header back: upper-cased, URL-encoded and as sent
            (an upstream that echoes credentials)
  Answers that misplace documents (the normal answer, then): overflow (the first result's
  score is the JSON number 1e400), dupindex (the second result repeats the first's index),
  badindex (the first result's index is past the last document), missing (the last result
  is left out)

Control: GET /_mock/requests -> every request received [{method, path, headers, body, json}]
(headers lower-cased); POST /_mock/reset clears it and the flaky counters; POST /_mock/revoke
invalidates every IAM token issued so far.
"""
import hashlib, hmac, json, re, select, socket, struct, sys, threading, time
from urllib.parse import parse_qs, quote, unquote

import mock_common
from mock_common import Reply, words

KEY, AWS_KEY, AWS_SECRET = "test-key", "test-key", "test-secret"
LOCK = threading.Lock()
LOG, FLAKY = [], {}
MALFORMED = object()  # a 200 whose body is cut-off JSON


def share(q, d):
    qw = set(words(q))
    return len(qw & set(words(d))) / len(qw) if qw else 0.0


def ranked(q, texts, top=None):
    s = sorted(((i, share(q, t)) for i, t in enumerate(texts)), key=lambda x: (-x[1], x[0]))
    return s[:top] if top else s


def tokens(q, texts):
    return len(words(q)) * len(texts) + sum(len(words(t)) for t in texts)


def doc_text(d, fields=None):
    if isinstance(d, str):
        return d
    return " ".join(str(d.get(f, "")) for f in (fields or ["text"]))


def image_words(url):
    """An image scores on the words of its URL (https://img.test/red-apple.png: red, apple);
    a data: URL's base64 payload rarely matches anything."""
    return url if isinstance(url, str) else ""


class Shape:
    """One provider's error shape and checks; subclasses give the handlers."""
    bad_status = 400

    def err(self, status, msg):
        return {"message": msg}

    def fail(self, status, msg, headers=None):
        raise Reply(status, self.err(status, msg), headers)

    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY:
            self.fail(401, "invalid api key")

    def need(self, b, field, kind, nonempty=False):
        v = b.get(field)
        if not isinstance(v, kind) or (nonempty and not v):
            self.fail(self.bad_status, "%s is required and must be a %s%s" % (field, kind.__name__, " (non-empty)" if nonempty else ""))
        return v

    def top(self, b, field="top_n"):
        v = b.get(field)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            self.fail(self.bad_status, field + " must be a positive integer")
        return v

    def strings(self, b, field):
        v = self.need(b, field, list, True)
        if not all(isinstance(x, str) for x in v):
            self.fail(self.bad_status, field + " must be a list of strings")
        return v


class Cohere(Shape):
    routes = ("/v1/rerank", "/v2/rerank")
    def err(self, status, msg): return {"message": ("invalid request: " if status == 400 else "") + msg}

    def handle(self, path, b, h):
        v2 = path.endswith("/v2/rerank")
        q = self.need(b, "query", str)
        docs = self.need(b, "documents", list, True)
        if v2:
            self.need(b, "model", str)
            self.strings(b, "documents")
            for f in ("rank_fields", "max_chunks_per_doc"):
                if f in b: self.fail(400, f + " is not supported on v2")
        rf = b.get("rank_fields")
        texts = []
        for d in docs:
            if not isinstance(d, (str, dict)) or (isinstance(d, dict) and not all(f in d for f in rf or ["text"])):
                self.fail(400, "each document must be a string or an object with the rank fields")
            texts.append(doc_text(d, rf))
        res = []
        for i, s in ranked(q, texts, self.top(b)):
            r = {"index": i, "relevance_score": s}
            if not v2 and b.get("return_documents"):
                r["document"] = docs[i] if isinstance(docs[i], dict) else {"text": docs[i]}
            res.append(r)
        return {"id": "mock-rerank", "results": res,
                "meta": {"api_version": {"version": "2" if v2 else "1"}, "billed_units": {"search_units": 1}}}


class Azure(Cohere):
    routes = ("/v1/rerank",)
    def handle(self, path, b, h):
        return super().handle(path, b, h), {"llm_provider-azureml-model-group": "offer-cohere-rerank-mul-paygo"}


class Compat(Cohere):
    """A Cohere-shaped server that only answers /v2/rerank (exercises path probing)."""
    routes = ("/v2/rerank",)


class Jina(Shape):
    routes = ("/v1/rerank",)
    bad_status = 422
    def err(self, status, msg): return {"detail": msg}

    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.need(b, "documents", list, True)
        model = self.need(b, "model", str)
        texts = []
        for d in docs:  # strings; jina-reranker-m0 also {text} / {image} objects
            if isinstance(d, str):
                texts.append(d)
            elif "m0" in model and isinstance(d, dict) and d and set(d) <= {"text", "image"} and all(isinstance(v, str) for v in d.values()):
                texts.append(" ".join([d.get("text", ""), image_words(d.get("image"))]).strip())
            else:
                self.fail(422, "documents must be a list of strings" + (" or {text}/{image} objects" if "m0" in model else ""))
        res = [dict({"index": i, "relevance_score": s},
                    **({"document": docs[i] if isinstance(docs[i], dict) else {"text": docs[i]}} if b.get("return_documents") else {}))
               for i, s in ranked(q, texts, self.top(b))]
        return {"model": b["model"], "usage": {"total_tokens": tokens(q, texts)}, "results": res}


class Voyage(Jina):
    bad_status = 400
    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.strings(b, "documents")
        self.need(b, "model", str)
        if len(docs) > 1000: self.fail(400, "documents: at most 1000")
        if "truncation" in b and not isinstance(b["truncation"], bool): self.fail(400, "truncation must be a boolean")
        res = [dict({"relevance_score": s, "index": i}, **({"document": docs[i]} if b.get("return_documents") else {}))
               for i, s in ranked(q, docs, self.top(b, "top_k"))]
        return {"object": "list", "data": res, "model": b["model"], "usage": {"total_tokens": tokens(q, docs)}}


class Together(Shape):
    routes = ("/v1/rerank",)
    def err(self, status, msg):
        return {"error": {"message": msg, "type": "invalid_request_error", "param": None, "code": status}}

    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.need(b, "documents", list, True)
        self.need(b, "model", str)
        rf = b.get("rank_fields")
        texts = [doc_text(d, rf or (list(d) if isinstance(d, dict) else None)) for d in docs]
        res = [dict({"index": i, "relevance_score": s},
                    **({"document": {"text": docs[i] if isinstance(docs[i], str) else json.dumps(docs[i])}} if b.get("return_documents") else {}))
               for i, s in ranked(q, texts, self.top(b))]
        n = tokens(q, texts)
        return {"object": "rerank", "id": "mock", "model": b["model"], "results": res,
                "usage": {"prompt_tokens": n, "completion_tokens": 0, "total_tokens": n}}


class Mixedbread(Jina):
    routes = ("/v1/reranking",)
    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.need(b, "input", list, True)
        texts = [doc_text(d, b.get("rank_fields")) for d in docs]
        k = self.top(b, "top_k") if b.get("top_k") != -1 else None
        res = [dict({"index": i, "score": s, "object": "rank_result"}, **({"input": docs[i]} if b.get("return_input") else {}))
               for i, s in ranked(q, texts, k)]
        n = tokens(q, texts)
        return {"object": "list", "model": b.get("model", "mixedbread-ai/mxbai-rerank-large-v2"), "top_k": k or len(docs),
                "return_input": bool(b.get("return_input")), "data": res,
                "usage": {"prompt_tokens": n, "total_tokens": n, "completion_tokens": None}}


class Pinecone(Shape):
    routes = ("/rerank",)
    def err(self, status, msg):
        code = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 429: "RESOURCE_EXHAUSTED"}.get(status, "INTERNAL")
        return {"error": {"code": code, "message": msg}, "status": status}

    def auth(self, h):
        if h.get("api-key") != KEY: self.fail(401, "Invalid API Key")
        if not h.get("x-pinecone-api-version"): self.fail(400, "missing X-Pinecone-Api-Version header")

    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.need(b, "documents", list, True)
        self.need(b, "model", str)
        rf = b.get("rank_fields") or ["text"]
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or not all(isinstance(d.get(f), str) for f in rf):
                self.fail(400, "Document %d is missing the rank field(s) %s" % (i, rf))
        t = (b.get("parameters") or {}).get("truncate")
        if t is not None and t not in ("END", "NONE"): self.fail(400, "parameters.truncate must be END or NONE")
        ret = b.get("return_documents", True)
        res = [dict({"index": i, "score": s}, **({"document": docs[i]} if ret else {}))
               for i, s in ranked(q, [doc_text(d, rf) for d in docs], self.top(b))]
        return {"model": b["model"], "data": res, "usage": {"rerank_units": 1}}


class Nim(Jina):
    routes = ("/v1/ranking", "/v1/retrieval/")
    bad_status = 400
    def handle(self, path, b, h):
        self.need(b, "model", str)
        q = self.need(b, "query", dict).get("text")
        ps = self.need(b, "passages", list, True)
        if not isinstance(q, str) or not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in ps):
            self.fail(400, "query.text and passages[].text must be strings")
        if b.get("truncate", "NONE") not in ("NONE", "END"): self.fail(400, "truncate must be NONE or END")
        if "top_k" in b and path.endswith("/v1/ranking"): self.fail(400, "top_k: extra inputs are not permitted")
        texts = [p["text"] for p in ps]
        res = [{"index": i, "logit": 10 * s - 5} for i, s in ranked(q, texts, b.get("top_k"))]
        return {"rankings": res, "usage": {"prompt_tokens": tokens(q, texts), "total_tokens": tokens(q, texts)}}


class Tei(Shape):
    routes = ("/rerank",)
    bad_status = 422
    def err(self, status, msg):
        kind = {400: "Empty", 401: "Unauthorized", 422: "Validation", 429: "Overloaded", 503: "Unhealthy"}.get(status, "Backend")
        return {"error": msg, "error_type": kind}

    def handle(self, path, b, h):
        q, texts = self.need(b, "query", str), self.strings(b, "texts")
        if len(texts) > 32: self.fail(422, "batch size %d > maximum allowed batch size 32" % len(texts))
        d = str(b.get("truncation_direction", "Right")).lower()
        if d not in ("right", "left"): self.fail(422, "truncation_direction must be Right or Left")
        res = [dict({"index": i, "score": (10 * s - 5) if b.get("raw_scores") else s},
                    **({"text": texts[i]} if b.get("return_text") else {})) for i, s in ranked(q, texts)]
        return res, {"x-compute-tokens": str(tokens(q, texts)), "x-compute-time": "1"}


class Infinity(Jina):
    routes = ("/rerank", "/v1/rerank")
    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY: raise Reply(401, {"detail": "Unauthorized"})

    def err(self, status, msg):
        if status == 422: return {"detail": [{"loc": ["body"], "msg": msg, "type": "value_error"}]}
        return {"error": {"message": msg, "type": "BadRequestError", "param": None, "code": status}}

    def handle(self, path, b, h):
        q, docs = self.need(b, "query", str), self.strings(b, "documents")
        res = [dict({"relevance_score": (10 * s - 5) if b.get("raw_scores") else s, "index": i},
                    **({"document": docs[i]} if b.get("return_documents") else {})) for i, s in ranked(q, docs, self.top(b))]
        n = tokens(q, docs)
        return {"object": "rerank", "results": res, "model": b.get("model", "default/not-specified"),
                "usage": {"prompt_tokens": n, "total_tokens": n}, "id": "infinity-mock", "created": 1700000000}


class Vllm(Shape):
    routes = ("/rerank", "/v1/rerank", "/v2/rerank", "/score", "/v1/score")
    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY: raise Reply(401, {"error": "Unauthorized"})

    def err(self, status, msg):
        return {"error": {"message": msg, "type": "BadRequestError", "param": None, "code": status}}

    def handle(self, path, b, h):
        act = b.get("use_activation", True)
        val = lambda s: s if act else 10 * s - 5
        if path.endswith("/score"):
            q, docs = self.need(b, "text_1", str), self.need(b, "text_2", list, True)
            data = [{"index": i, "object": "score", "score": val(share(q, d))} for i, d in enumerate(docs)]
            return {"id": "score-mock", "object": "list", "created": 1700000000, "model": b.get("model", "m"), "data": data,
                    "usage": {"prompt_tokens": tokens(q, docs), "total_tokens": tokens(q, docs)}}
        q, docs = self.need(b, "query", str), self.need(b, "documents", list, True)
        texts = []
        for d in docs:  # strings or {"content": [text / image_url parts]} (reference §24)
            parts = d.get("content") if isinstance(d, dict) else None
            if isinstance(d, str):
                texts.append(d)
            elif isinstance(parts, list) and parts and all(isinstance(p, dict) and p.get("type") in ("text", "image_url") for p in parts):
                texts.append(" ".join(p["text"] if p["type"] == "text" else image_words((p.get("image_url") or {}).get("url"))
                                      for p in parts))
            else:
                self.fail(400, "documents must be strings or {content: [parts]} objects")
        k = b.get("top_n") or None
        res = [{"index": i, "document": {"text": docs[i] if isinstance(docs[i], str) else None,
                                         "multi_modal": docs[i]["content"] if isinstance(docs[i], dict) else None},
                "relevance_score": val(s)} for i, s in ranked(q, texts, k)]
        return {"id": "rerank-mock", "model": b.get("model", "m"), "results": res,
                "usage": {"prompt_tokens": tokens(q, texts), "total_tokens": tokens(q, texts)}}


class Llamacpp(Shape):
    routes = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")
    def err(self, status, msg):
        kind = {400: "invalid_request_error", 401: "authentication_error", 503: "unavailable_error"}.get(status, "server_error")
        return {"error": {"code": status, "message": msg, "type": kind}}

    def handle(self, path, b, h):
        q = self.need(b, "query", str)
        tei = "texts" in b
        docs = self.strings(b, "documents" if "documents" in b else "texts")
        res = ranked(q, docs, self.top(b))
        if tei:
            return [dict({"index": i, "score": 10 * s - 5}, **({"text": docs[i]} if b.get("return_text") else {})) for i, s in res]
        n = tokens(q, docs)
        return {"model": b.get("model", "llama"), "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n},
                "results": [{"index": i, "relevance_score": 10 * s - 5} for i, s in res]}


class Deepinfra(Shape):
    routes = ("/v1/inference/",)
    bad_status = 422
    def err(self, status, msg): return {"detail": {"error": msg}}

    def handle(self, path, b, h):
        docs = self.strings(b, "documents")
        qs = b.get("queries")
        q = qs[0] if isinstance(qs, list) and qs and isinstance(qs[0], str) else self.need(b, "query", str)
        n = tokens(q, docs)
        return {"scores": [share(q, d) for d in docs], "input_tokens": n, "request_id": "mock",
                "inference_status": {"status": "succeeded", "runtime_ms": 1, "cost": 0.0, "tokens_input": n, "tokens_generated": 0}}


class Fireworks(Shape):
    routes = ("/inference/v1/rerank",)
    ALLOWED = {"model", "query", "documents", "top_n", "return_documents", "task"}
    def err(self, status, msg): return {"error": {"object": "error", "type": "invalid_request_error", "message": msg}}

    def handle(self, path, b, h):
        extra = sorted(set(b) - self.ALLOWED)
        if extra: self.fail(400, "Extra inputs are not permitted: " + ", ".join(extra))
        self.need(b, "model", str)
        q, docs = self.need(b, "query", str), self.strings(b, "documents")
        ret = b.get("return_documents", True)
        res = [dict({"index": i, "relevance_score": s}, **({"document": docs[i]} if ret else {})) for i, s in ranked(q, docs, self.top(b))]
        n = tokens(q, docs)
        return {"object": "list", "model": b["model"], "data": res, "usage": {"prompt_tokens": n, "total_tokens": n}}


class Bedrock(Shape):
    routes = ("/rerank", "/model/")
    def err(self, status, msg): return {"message": msg}

    def fail(self, status, msg, headers=None):
        kind = {400: "ValidationException", 403: "AccessDeniedException", 429: "ThrottlingException",
                503: "ServiceUnavailableException"}.get(status, "InternalServerException")
        raise Reply(status, {"message": msg}, dict({"x-amzn-ErrorType": kind}, **(headers or {})))

    def auth(self, h, method="POST", raw_path="/", body=b""):
        a = h.get("authorization", "")
        if a == "Bearer " + KEY: return
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", a)
        if not m: self.fail(403, "Authorization header requires a SigV4 signature or a Bedrock API key")
        ak, day, region, service, signed, sig = m.groups()
        if ak != AWS_KEY: self.fail(403, "The security token included in the request is invalid.")
        if service != "bedrock": self.fail(403, "Credential should be scoped to correct service: 'bedrock'.")
        names = signed.split(";")
        if "host" not in names or "x-amz-date" not in names or not h.get("x-amz-date", "").startswith(day):
            self.fail(403, "host and x-amz-date must be signed")
        canon = "\n".join([method, quote(raw_path, safe="/-_.~"), "",
                           "".join("%s:%s\n" % (n, " ".join(h.get(n, "").split())) for n in names),
                           signed, hashlib.sha256(body).hexdigest()])
        scope = "%s/%s/%s/aws4_request" % (day, region, service)
        to_sign = "\n".join(["AWS4-HMAC-SHA256", h["x-amz-date"], scope, hashlib.sha256(canon.encode()).hexdigest()])
        k = ("AWS4" + AWS_SECRET).encode()
        for part in (day, region, service, "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest(), sig):
            self.fail(403, "The request signature we calculated does not match the signature you provided.")

    def handle(self, path, b, h):
        if "/model/" in path:
            model = unquote(path.split("/model/", 1)[1].rsplit("/invoke", 1)[0])
            q, docs = self.need(b, "query", str), self.strings(b, "documents")
            if model.startswith("cohere."):
                if "model" in b: self.fail(400, "Malformed input request: extraneous key [model] is not permitted")
                if b.get("api_version") not in (1, 2): self.fail(400, "Malformed input request: api_version must be 1 or 2")
            res = [{"index": i, "relevance_score": s} for i, s in ranked(q, docs, self.top(b))]
            return {"id": "mock", "results": res}, {"X-Amzn-Bedrock-Input-Token-Count": str(tokens(q, docs)),
                                                    "X-Amzn-Bedrock-Output-Token-Count": "0"}
        qs, src = self.need(b, "queries", list, True), self.need(b, "sources", list, True)
        if len(qs) != 1 or qs[0].get("type") != "TEXT" or not isinstance((qs[0].get("textQuery") or {}).get("text"), str):
            self.fail(400, "queries must hold exactly 1 TEXT query")
        texts = []
        for s in src:
            d = s.get("inlineDocumentSource") if isinstance(s, dict) and s.get("type") == "INLINE" else None
            if not d or d.get("type") not in ("TEXT", "JSON"): self.fail(400, "sources[].type must be INLINE with a TEXT or JSON document")
            texts.append(d["textDocument"]["text"] if d["type"] == "TEXT" else json.dumps(d.get("jsonDocument")))
        cfg = (b.get("rerankingConfiguration") or {})
        brc = cfg.get("bedrockRerankingConfiguration") or {}
        if cfg.get("type") != "BEDROCK_RERANKING_MODEL" or not (brc.get("modelConfiguration") or {}).get("modelArn"):
            self.fail(400, "rerankingConfiguration needs type BEDROCK_RERANKING_MODEL and a modelArn")
        res = [{"index": i, "relevanceScore": s} for i, s in ranked(qs[0]["textQuery"]["text"], texts, brc.get("numberOfResults"))]
        return {"results": res}


class Sglang(Shape):
    """SGLang /v1/rerank (reference §23): bare-list answer, flat error bodies, instruct."""
    routes = ("/v1/rerank",)
    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY: raise Reply(401, {"error": "Unauthorized"})

    def err(self, status, msg):
        kind = "BadRequestError" if status < 500 else "InternalServerError"
        return {"object": "error", "message": msg, "type": kind, "param": None, "code": status}

    def handle(self, path, b, h):
        q = b.get("query")
        if not isinstance(q, str) or not q.strip(): self.fail(400, "Query cannot be empty")
        docs = b.get("documents")
        if not isinstance(docs, list) or not docs: self.fail(400, "Documents cannot be empty")
        if "instruct" in b and b["instruct"] is not None and not isinstance(b["instruct"], str):
            self.fail(400, "instruct must be a string")
        texts, multimodal = [], False
        for d in docs:
            if isinstance(d, str) and d:
                texts.append(d)
            elif isinstance(d, list) and d and all(isinstance(p, dict) and p.get("type") in ("text", "image_url") for p in d):
                multimodal = True
                texts.append(" ".join(p["text"] if p["type"] == "text" else image_words((p.get("image_url") or {}).get("url"))
                                      for p in d))
            else:
                self.fail(400, "Each document must be a non-empty string or a list of content parts")
        k = b.get("top_n")
        if k is not None and (not isinstance(k, int) or k < 1): self.fail(400, "parameter top_n should be larger than 0")
        ret = b.get("return_documents", True)
        if ret and multimodal: self.fail(500, "1 validation error for RerankResponse: document must be a string")
        return [dict({"score": s}, **({"document": docs[i]} if ret else {}), index=i, meta_info=None)
                for i, s in ranked(q, texts, k)]


class ZeroEntropy(Shape):
    """ZeroEntropy /v1/models/rerank (reference §21); the error body is unverified: FastAPI's."""
    routes = ("/v1/models/rerank",)
    def err(self, status, msg): return {"detail": msg}

    def handle(self, path, b, h):
        self.need(b, "model", str)
        q, docs = self.need(b, "query", str), self.strings(b, "documents")
        if b.get("latency") not in (None, "fast", "slow"): self.fail(400, "latency must be fast or slow")
        size = sum(150 + len(q.encode()) + len(d.encode()) for d in docs)
        if size > 5000000: self.fail(400, "Request too large: %d bytes (max 5000000)" % size)
        k = self.top(b)
        res = [{"index": i, "relevance_score": s} for i, s in ranked(q, docs, k)]
        return {"results": res, "actual_latency_mode": b.get("latency") or "fast", "e2e_latency": 0.01,
                "inference_latency": 0.005, "total_bytes": size, "total_tokens": tokens(q, docs)}


class Contextual(Shape):
    """Contextual AI /v1/rerank (reference §22); error body unverified: FastAPI's."""
    routes = ("/v1/rerank",)
    def err(self, status, msg): return {"detail": msg}

    def handle(self, path, b, h):
        self.need(b, "model", str)
        q, docs = self.need(b, "query", str), self.strings(b, "documents")
        for f in ("instruction",):
            if b.get(f) is not None and not isinstance(b[f], str): self.fail(400, f + " must be a string")
        md = b.get("metadata")
        if md is not None:
            if not isinstance(md, list) or len(md) != len(docs) or not all(isinstance(m, str) for m in md):
                self.fail(400, "metadata must be a list of strings of the same length as documents")
        res = [{"index": i, "relevance_score": round(s, 8)} for i, s in ranked(q, docs, self.top(b))]
        return {"results": res}


class Dashscope(Shape):
    """DashScope native text-rerank and the compatible /compatible-api/v1/reranks (reference §27)."""
    routes = ("/api/v1/services/rerank/text-rerank/text-rerank", "/compatible-api/v1/reranks")
    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY:
            raise Reply(401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "mock-req"})

    def err(self, status, msg):
        code = {400: "InvalidParameter", 429: "Throttling.RateQuota"}.get(status, "InternalError")
        return {"code": code, "message": msg, "request_id": "mock-req"}

    def docs(self, model, docs):
        vl = "vl" in model
        texts = []
        for d in docs:
            if isinstance(d, str):
                texts.append(d)
            elif vl and isinstance(d, dict) and d and set(d) <= {"text", "image"} and all(isinstance(v, str) for v in d.values()):
                texts.append(" ".join([d.get("text", ""), image_words(d.get("image"))]).strip())
            else:
                self.fail(400, "documents must be strings%s" % (" or {text}/{image} objects" if vl else ""))
        limit = (40 if any(isinstance(d, dict) and "image" in d for d in docs) else 100) if vl else 500
        if len(docs) > limit: self.fail(400, "documents: at most %d" % limit)
        return texts

    def handle(self, path, b, h):
        model = self.need(b, "model", str)
        if path.startswith("/compatible-api/"):
            if model != "qwen3-rerank": self.fail(400, "model %s is not supported on this endpoint" % model)
            q, docs = self.need(b, "query", str), self.need(b, "documents", list, True)
            texts = self.docs("", docs)
            res = [dict({"index": i, "relevance_score": s}, **({"document": {"text": docs[i]}} if b.get("return_documents") else {}))
                   for i, s in ranked(q, texts, self.top(b))]
            return {"id": "mock-id", "object": "list", "model": model, "results": res,
                    "usage": {"total_tokens": tokens(q, texts)}}
        inp, par = self.need(b, "input", dict), b.get("parameters") or {}
        q, docs = self.need(inp, "query", str), self.need(inp, "documents", list, True)
        if not isinstance(par, dict): self.fail(400, "parameters must be an object")
        texts = self.docs(model, docs)
        res = [dict({"index": i, "relevance_score": s},
                    **({"document": docs[i] if isinstance(docs[i], dict) else {"text": docs[i]}} if par.get("return_documents") else {}))
               for i, s in ranked(q, texts, self.top(par))]
        return {"output": {"results": res}, "usage": {"total_tokens": tokens(q, texts)}, "request_id": "mock-req"}


class NimVl(Nim):
    """NIM VL /v1/ranking (reference §30): passages [{text?, image?}], images as data: URLs."""
    routes = ("/v1/ranking",)
    def handle(self, path, b, h):
        self.need(b, "model", str)
        q = self.need(b, "query", dict).get("text")
        if not isinstance(q, str) or not q: self.fail(400, "query.text must be a non-empty string")
        ps = self.need(b, "passages", list, True)
        if len(ps) > 512: self.fail(400, "at most 512 passages")
        if "top_k" in b: self.fail(400, "top_k: extra inputs are not permitted")
        if b.get("truncate", "NONE") not in ("NONE", "END"): self.fail(400, "truncate must be NONE or END")
        texts = []
        for p in ps:
            if not isinstance(p, dict) or not (set(p) <= {"text", "image"}) or not p:
                self.fail(400, "each passage needs text, image or both")
            if "text" in p and (not isinstance(p["text"], str) or not p["text"]): self.fail(400, "passage text must be a non-empty string")
            img = p.get("image")
            if img is not None and (not isinstance(img, str) or not img.startswith("data:image/")):
                self.fail(400, "passage image must be a base64 data URL")
            texts.append(" ".join([p.get("text", ""), image_words(img)]).strip())
        res = [{"index": i, "logit": 10 * s - 5} for i, s in ranked(q, texts)]
        return {"rankings": res, "usage": {"prompt_tokens": tokens(q, texts), "total_tokens": tokens(q, texts)}}


class Vertex(Shape):
    """Vertex AI ranking (Discovery Engine) :rank (reference §28): records by id, <= 200."""
    routes = ("/v1/projects/",)
    def err(self, status, msg):
        st = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}.get(status, "INTERNAL")
        return {"error": {"code": status, "message": msg, "status": st}}

    def auth(self, h):
        if h.get("authorization") != "Bearer " + KEY:
            self.fail(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                           "cookie or other valid authentication credential.")

    def handle(self, path, b, h):
        if not re.fullmatch(r"/v1/projects/[^/]+/locations/[^/]+/rankingConfigs/[^/:]+:rank", path):
            self.fail(404, "Method not found.")
        q, recs = self.need(b, "query", str), self.need(b, "records", list, True)
        if len(recs) > 200: self.fail(400, "Number of records (%d) exceeds the limit of 200." % len(recs))
        ids = []
        for r in recs:
            if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not (r.get("title") or r.get("content")):
                self.fail(400, "Each record needs an id and at least one of title and content.")
            ids.append(r["id"])
        if len(set(ids)) != len(ids): self.fail(400, "Record ids must be unique.")
        k = b.get("topN")
        if k is not None and not isinstance(k, int): self.fail(400, "topN must be an integer")
        texts = [" ".join([r.get("title") or "", r.get("content") or ""]).strip() for r in recs]
        out = []
        for i, s in ranked(q, texts, k if k and k > 0 else None):
            r = {"id": recs[i]["id"]}
            if s != 0: r["score"] = s  # proto3 JSON leaves out zero values
            if not b.get("ignoreRecordDetailsInResponse"):
                r.update({f: recs[i][f] for f in ("title", "content") if recs[i].get(f)})
            out.append(r)
        return {"records": out}


ISSUED = {}  # IAM access token -> expiry (time.time())


class Iam(Shape):
    """IBM Cloud IAM POST /identity/token (API key -> bearer token); form-encoded body.
    /expires/S/identity/token issues tokens that live S seconds (default 3600)."""
    routes = ("/identity/token", "/expires/")
    form = True
    def err(self, status, msg):
        return {"errorCode": "BXNIM0415E", "errorMessage": msg, "context": {"requestId": "mock"}}

    def auth(self, h):
        if not h.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            self.fail(400, "Unsupported content type")

    def handle(self, path, b, h):
        m = re.fullmatch(r"(?:/expires/(\d+))?/identity/token", path)
        if not m: self.fail(404, "Not found")
        if b.get("grant_type") != ["urn:ibm:params:oauth:grant-type:apikey"]: self.fail(400, "Unsupported grant type")
        if b.get("apikey") != [KEY]: self.fail(400, "Provided API key could not be found.")
        life = int(m.group(1) or 3600)
        with LOCK:
            tok = "iam-token-%d" % (len(ISSUED) + 1)
            ISSUED[tok] = time.time() + life
        now = int(time.time())
        return {"access_token": tok, "refresh_token": "not_supported", "token_type": "Bearer", "expires_in": life,
                "expiration": now + life, "scope": "ibm openid"}


class Watsonx(Shape):
    """watsonx.ai POST /ml/v1/text/rerank?version= (reference §29), IAM bearer tokens only."""
    routes = ("/ml/v1/text/rerank",)
    def err(self, status, msg, code=None):
        code = code or {400: "json_validation_error", 401: "authentication_token_not_valid",
                        429: "token_quota_reached"}.get(status, "internal_error")
        return {"errors": [{"code": code, "message": msg, "more_info": "https://cloud.ibm.com/apidocs/watsonx-ai#text-rerank"}],
                "trace": "mock-trace", "status_code": status}

    def auth(self, h):
        a = h.get("authorization", "")
        tok = a[7:] if a.startswith("Bearer ") else None
        with LOCK:
            exp = ISSUED.get(tok)
        if exp is None:
            raise Reply(401, self.err(401, "Failed to authenticate the request due to invalid token"))
        if exp < time.time():
            raise Reply(401, self.err(401, "Failed to authenticate the request due to an expired token",
                                      "authentication_token_expired"))

    def handle(self, path, b, h):
        model = self.need(b, "model_id", str)
        q, inputs = self.need(b, "query", str), self.need(b, "inputs", list, True)
        if (b.get("project_id") is None) == (b.get("space_id") is None): self.fail(400, "Exactly one of project_id or space_id is required")
        if len(inputs) > 1000: self.fail(400, "inputs: at most 1000")
        if not all(isinstance(i, dict) and isinstance(i.get("text"), str) for i in inputs): self.fail(400, "inputs[].text must be a string")
        ro = (b.get("parameters") or {}).get("return_options") or {}
        texts = [i["text"] for i in inputs]
        res = [dict({"index": i, "score": 10 * s - 5}, **({"input": {"text": texts[i]}} if ro.get("inputs") else {}))
               for i, s in ranked(q, texts, self.top(ro))]
        return {"model_id": model, "model_version": "2.0.0", "results": res, "created_at": "2026-06-12T07:32:50.000Z",
                "input_token_count": tokens(q, texts)}


class Custom(Shape):
    """The made-up "My Rerank" API of examples/providers/my_rerank.lua."""
    routes = ("/score",)

    def handle(self, path, b, h):
        q, ps = self.need(b, "q", str), self.strings(b, "passages")
        return {"scores": [{"i": i, "s": 10 * s - 5} for i, s in ranked(q, ps, self.top(b, "k"))], "tokens": tokens(q, ps)}


PROVIDERS = {"cohere": Cohere(), "azure": Azure(), "jina": Jina(), "voyage": Voyage(), "together": Together(),
             "mixedbread": Mixedbread(), "pinecone": Pinecone(), "nim": Nim(), "tei": Tei(), "infinity": Infinity(),
             "vllm": Vllm(), "llamacpp": Llamacpp(), "deepinfra": Deepinfra(), "fireworks": Fireworks(), "bedrock": Bedrock(),
             "compat": Compat(), "custom": Custom(), "sglang": Sglang(), "zeroentropy": ZeroEntropy(),
             "contextual": Contextual(), "dashscope": Dashscope(), "nimvl": NimVl(), "vertex": Vertex(),
             "iam": Iam(), "watsonx": Watsonx()}


class Handler(mock_common.Handler):
    def send(self, status, obj, headers=None, raw=None, fault=""):
        if obj is MALFORMED:
            raw = b'{"results": [{"index": 0, "relevance_score": 0.5}, {"index": 1, "rel'
        if isinstance(obj, bytes):
            raw = obj
        body = raw if raw is not None else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if fault == "truncated":
            self.send_header("Content-Length", str(len(body) + 100))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault == "drip":
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/_mock/requests"):
            with LOCK:
                return self.send(200, LOG)
        self.send(404, {"detail": "Not Found"})

    def do_POST(self):
        raw = self.read_body()
        if self.path.startswith("/_mock/reset"):
            with LOCK:
                LOG.clear(); FLAKY.clear()
            return self.send(200, {"ok": True})
        if self.path.startswith("/_mock/revoke"):
            with LOCK:
                ISSUED.clear()
            return self.send(200, {"ok": True})
        path, fault = self.path.split("?", 1)[0], self.headers.get("x-mock-fault", "")
        m = re.match(r"^/fault/([^/]+)(/.*)$", path)
        if m:
            fault, path = unquote(m.group(1)), m.group(2)
        h = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with LOCK:
            self.entry = {"method": "POST", "path": self.path, "headers": h, "body": raw.decode("utf-8", "replace"), "json": body}
            LOG.append(self.entry)
            del LOG[:-500]
        name, _, rest = path.lstrip("/").partition("/")
        p, rest = PROVIDERS.get(name), "/" + rest
        if not p or not any(rest == r or (r.endswith("/") and rest.startswith(r)) for r in p.routes):
            return self.send(404, {"detail": "Not Found"})
        try:
            if fault:
                self.inject(fault, p)
            if isinstance(p, Bedrock):
                p.auth(h, "POST", self.path, raw)
            else:
                p.auth(h)
            if getattr(p, "form", False):
                body = parse_qs(raw.decode("utf-8", "replace"))
            elif not isinstance(body, (dict, list)):
                p.fail(p.bad_status, "request body must be JSON")
            out = p.handle(rest, body, h)
            extra = {}
            if isinstance(out, tuple):
                out, extra = out
            raw_out = None
            if fault in ANSWER_FAULTS:
                raw_out = answer_fault(fault, out)
            self.send(200, out, extra, raw=raw_out, fault=fault if fault in ("truncated", "drip") else "")
        except Reply as r:
            self.send(r.status, r.body, r.headers)

    def inject(self, fault, p):
        kind, _, arg = fault.partition(":")
        if kind == "slow":
            end = time.time() + int(arg or 1000) / 1000.0
            while time.time() < end:  # a client that hangs up meanwhile is recorded: "cancelled"
                r, _, _ = select.select([self.connection], [], [], min(0.02, max(0, end - time.time())))
                if r and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    with LOCK:
                        self.entry["cancelled"] = True
                    self.close_connection = True
                    raise _Reset()
        elif kind == "429":
            p.fail(429, "rate limit exceeded", {"Retry-After": arg or "1"})
        elif kind in ("500", "503"):
            p.fail(int(kind), "mock fault " + kind)
        elif kind == "flaky":
            with LOCK:
                FLAKY[fault] = FLAKY.get(fault, 0) + 1
                left = FLAKY[fault] <= int(arg or 1)
            if left:
                p.fail(503, "mock flaky fault")
        elif kind == "malformed":
            raise Reply(200, MALFORMED)
        elif kind == "badutf8":
            if arg == "json":
                raise Reply(500, b'{"message": "upstream broke: \xff\xfe bytes \xc0\xaf and a cut \xe2\x82"}')
            raise Reply(500, b'\xff\xfe<html>upstream \xc0\xaf broke \xed\xa0\x80</html>')
        elif kind == "echo":
            vals = [v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "content-type",
                                                                              "accept", "user-agent", "expect")]
            msg = "rejected credentials: " + " | ".join(
                [v.upper() for v in vals] + [quote(v, safe="") for v in vals] + vals)
            raise Reply(401, {"message": msg})
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            raise _Reset()


class _Reset(Exception):
    pass


ANSWER_FAULTS = ("overflow", "dupindex", "badindex", "missing")


def answer_fault(kind, out):
    """The answer's bytes after the fault: out is a normal answer with a results list."""
    res = out.get("results") if isinstance(out, dict) else None
    if not isinstance(res, list) or not res:
        return None
    score = "relevance_score" if "relevance_score" in res[0] else "score"
    if kind == "overflow":
        res[0][score] = "__OVERFLOW__"
        return json.dumps(out).replace('"__OVERFLOW__"', "1e400").encode()
    if kind == "dupindex" and len(res) > 1:
        res[1]["index"] = res[0]["index"]
    elif kind == "badindex":
        res[0]["index"] = len(res) + 5
    elif kind == "missing":
        res.pop()
    return json.dumps(out).encode()


class Server(mock_common.Server):
    quiet_errors = (_Reset, ConnectionError, BrokenPipeError)


def main():
    mock_common.main(__doc__, Server, Handler)


if __name__ == "__main__":
    main()
