-- LLM reranker over any OpenAI-compatible chat completions API (OpenAI, vLLM, llama.cpp,
-- Together, ...): POST {base_url}/v1/chat/completions.
--
-- mode: lancedb (default) reproduces LanceDB's OpenaiReranker (reference/provider-apis.md
--   §17): one JSON-mode call with the query and the documents, answer
--   {"documents": [{"content", "relevance_score"}]}, default model gpt-4-turbo-preview, key
--   from api_key or OPENAI_API_KEY. Unlike LanceDB: documents carry ids and are matched back
--   by id, then content, then position; scores are clamped to [0, 1]; missing, extra and
--   duplicate items are repaired and counted; more than batch_size documents (default 20)
--   are split into batches sent concurrently (at most `concurrency` in flight).
-- mode: pointwise: one call per document, concurrently (at most `concurrency`, default 8, in
--   flight), template pointwise_json (a JSON score) or yes_no (P(yes) from logprobs).
-- The template (a Lua file found by name in paths.templates) decides the prompt and the
-- parsing; its kind ("list" or "pointwise") decides the mode when `mode` is not set.
--
-- Failures: a call that fails (transport error, HTTP error; 408, 409, 429 and 5xx are
-- retried `call_retries` times, default 0, as a further round of the same request) or whose
-- answer cannot be read leaves its documents at score 0 and marks the response degraded;
-- when every call fails the request fails (502, or 504 on timeouts), so the model's own
-- `retries` and `fallbacks` (the router's, whole request) apply. Coerced, clamped, guessed,
-- missing and extra scores count as repairs.
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"

local P = {
  name = "openai_llm",
  score_kind = "probability", -- lua/rerank/score.lua
  env_key = "OPENAI_API_KEY",
  templates = true,   -- config/load.lua resolves `template` in paths.templates
  concurrency = 8,
  defaults = { base_url = "https://api.openai.com", path = "/v1/chat/completions", model = "gpt-4-turbo-preview" },
  options = {
    mode = { type = "string", enum = { "lancedb", "pointwise" } },
    batch_size = { type = "integer", min = 1, default = 20 }, -- lancedb mode: documents per call
    temperature = { type = "number", min = 0, max = 2 },
    max_tokens = { type = "integer", min = 1 },
    logprobs = "boolean",                                     -- ask for (or stop asking for) logprobs
    top_logprobs = { type = "integer", min = 0, max = 20 },
    ids = "boolean",                                          -- lancedb template: send document ids
    json_mode = "boolean",                                    -- false: no response_format (servers without JSON mode)
    call_retries = { type = "integer", min = 0, default = 0 }, -- per call, in the same request
  },
}

local DEFAULT_TEMPLATE = { lancedb = "lancedb", pointwise = "pointwise_json" }

local opt = require("rerank.provider_util").opt -- model.options[k], else default

local function setup(model, req, state)
  local mode = opt(model, "mode")
  local tpl, err
  if model.template or model.template_file then
    tpl, err = llm.template(model)
    if not tpl then error(err, 0) end
    local kind_mode = tpl.kind == "list" and "lancedb" or tpl.kind == "pointwise" and "pointwise" or nil
    if not kind_mode then
      error(("template %q is a %s template; openai_llm takes list or pointwise templates (use provider "
        .. "openai_listwise)"):format(tpl.name, tpl.kind), 0)
    end
    if mode and mode ~= kind_mode then
      error(("template %q is a %s template but mode is %q"):format(tpl.name, tpl.kind, mode), 0)
    end
    mode = kind_mode
  else
    mode = mode or "lancedb"
    tpl, err = llm.template(model, DEFAULT_TEMPLATE[mode])
    if not tpl then error(err, 0) end
  end
  state.mode, state.tpl = mode, tpl
  state.scores, state.usage, state.repairs = {}, {}, 0
  state.ok, state.failed, state.unparsed = 0, 0, 0
  state.topts = { instruction = llm.instruction(model, req), ids = opt(model, "ids"), mode = mode }

  -- body fields: the template's request, then the model's options
  local f = {}
  for k, v in pairs(tpl.request or {}) do f[k] = v end
  if opt(model, "temperature") ~= nil then f.temperature = opt(model, "temperature") end
  if opt(model, "max_tokens") ~= nil then f.max_tokens = opt(model, "max_tokens") end
  local lp = opt(model, "logprobs")
  if lp == true then
    f.logprobs, f.top_logprobs = true, f.top_logprobs or 5
  elseif lp == false then
    f.logprobs, f.top_logprobs = nil, nil
  end
  if opt(model, "top_logprobs") ~= nil and f.logprobs then f.top_logprobs = opt(model, "top_logprobs") end
  if opt(model, "json_mode") == false then f.response_format = nil end
  state.fields = f

  -- jobs: one per document (pointwise) or per batch (lancedb); each a list of 1-based indices
  local n, jobs = #req.documents, {}
  local size = mode == "pointwise" and 1 or opt(model, "batch_size", 20)
  for first = 1, n, size do
    local idx = {}
    for i = first, math.min(n, first + size - 1) do idx[#idx + 1] = i end
    jobs[#jobs + 1] = { id = #jobs + 1, docs = idx, attempts = 0 }
  end
  state.jobs, state.pending, state.settled = jobs, {}, 0
  for i = 1, #jobs do state.pending[i] = i end
end

local function window_of(req, job)
  local w = {}
  for k, i in ipairs(job.docs) do
    local d = req.documents[i]
    w[k] = { id = i - 1, index = i - 1, text = llm.doc_text(req, d), title = d.title }
  end
  return w
end

function P.plan(model, req, state)
  if not state.jobs then setup(model, req, state) end
  local calls, round = {}, {}
  for _, j in ipairs(state.pending) do
    local job = state.jobs[j]
    job.attempts = job.attempts + 1
    local window = window_of(req, job)
    local msgs = state.mode == "pointwise" and state.tpl.messages(req.query, window[1], state.topts)
        or state.tpl.messages(req.query, window, state.topts)
    calls[#calls + 1] = llm.chat_spec(model, P, req, msgs, state.fields)
    round[#calls] = { job = job, window = window }
  end
  state.pending, state.round = {}, round
  return calls
end

-- a score the template produced, clamped to [0, 1]; repairs when it had to be changed
local function final_score(x)
  local s, coerced = llm_parse.to_number(x)
  if not s then return 0, 1 end
  local c, changed = llm_parse.clamp(s, 0, 1)
  return c, (coerced or changed) and 1 or 0
end

local function settle(state)
  state.settled = state.settled + 1
end

function P.absorb(model, _, state, _, responses)
  local retries = opt(model, "call_retries", 0)
  for k, r in ipairs(state.round) do
    local job, window = r.job, r.window
    local ctx = { window = window, n = #window, mode = state.mode }
    local status, out, usage, retryable = llm.outcome(model, state.tpl, responses[k], ctx)
    llm.add_usage(state.usage, usage)
    if status == "failed" then
      if retryable and job.attempts <= retries then
        state.pending[#state.pending + 1] = job.id -- retried in the next round
      else
        state.failed = state.failed + 1
        state.first_error = state.first_error or out
        for _, i in ipairs(job.docs) do state.scores[i] = 0 end
        state.degraded = true
        settle(state)
      end
    elseif status == "unparseable" then
      -- an answer we cannot read: its documents get the lowest score (a repair each)
      state.unparsed = state.unparsed + 1
      for _, i in ipairs(job.docs) do state.scores[i] = 0 end
      state.repairs = state.repairs + #job.docs
      state.degraded = true
      settle(state)
    else
      state.ok = state.ok + 1
      state.repairs = state.repairs + (type(out) == "table" and tonumber(out.repairs) or 0)
      if state.mode == "pointwise" then
        local raw = type(out) == "table" and out.score or out
        local s, rep = final_score(raw)
        state.scores[job.docs[1]] = s
        state.repairs = state.repairs + rep
      else
        local scores = type(out) == "table" and out.scores or {}
        for pos, i in ipairs(job.docs) do
          local s, rep = final_score(scores[pos])
          state.scores[i] = s
          state.repairs = state.repairs + rep
        end
      end
      settle(state)
    end
  end
  state.round = nil
  -- every call failed: the request fails (a fallback model can take over)
  if state.settled == #state.jobs and state.ok == 0 and state.unparsed == 0 and state.failed > 0 then
    state.error = state.first_error
  end
end

function P.combine(_, req, state)
  local scores = {}
  for i = 1, #req.documents do scores[i] = state.scores and state.scores[i] or 0 end
  return llm.combined(state, scores, "relevance")
end

return P
