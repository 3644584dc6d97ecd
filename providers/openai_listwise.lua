-- Listwise LLM reranker (RankGPT, reference/provider-apis.md §18) over any OpenAI-compatible
-- chat completions API: POST {base_url}/v1/chat/completions, default model gpt-3.5-turbo,
-- key from api_key or OPENAI_API_KEY.
--
-- The top `candidates` documents (default 100, in the order given: the first stage's ranking)
-- are reordered by sliding windows of `window` documents (default 20) moving up by `step`
-- (default 10), back to front: for 100 candidates [81,100], [71,90], ..., [1,20]. The first
-- window's start is clamped to 1 (RankGPT skips a leftover top window). One call per window,
-- in sequence (each window sees the previous one's order). The answer is a permutation
-- "[2] > [1] > [3]", repaired as RankGPT does: out-of-window ids and duplicates dropped,
-- missing ids appended in their prior order (each counts as a repair).
--
-- Scores are rank-derived (score_kind "rank"): the document at final rank r of n gets
-- 1 - (r - 1) / n; documents past `candidates` follow the candidates in their input order.
-- A window whose call fails (408, 409, 429 and 5xx are retried `call_retries` times, default
-- 0) keeps its order and marks the response degraded; an answer without a permutation keeps
-- the order too (repairs + degraded); when every window fails the request fails (502, or 504
-- on timeouts), so the model's own `retries` and `fallbacks` (whole request) apply.
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"

local P = {
  name = "openai_listwise",
  score_kind = "rank", -- lua/rerank/score.lua
  env_key = "OPENAI_API_KEY",
  templates = true,   -- config/load.lua resolves `template` in paths.templates
  concurrency = 1,    -- one call per round: windows are sequential
  cacheable = false,  -- a document's rank depends on the whole list (lua/rerank/engine/cache.lua)
  defaults = { base_url = "https://api.openai.com", path = "/v1/chat/completions", model = "gpt-3.5-turbo" },
  options = {
    window = { type = "integer", min = 2, default = 20 },
    step = { type = "integer", min = 1, default = 10 },
    candidates = { type = "integer", min = 1, default = 100 },
    max_words = { type = "integer", min = 1 },              -- words kept per passage (RankGPT: 300)
    temperature = { type = "number", min = 0, max = 2 },
    max_tokens = { type = "integer", min = 1 },
    call_retries = { type = "integer", min = 0, default = 0 }, -- per window, in the same request
  },
}

local opt = require("rerank.provider_util").opt -- model.options[k], else default

local function setup(model, req, state)
  local tpl, err = llm.template(model, "rankgpt")
  if not tpl then error(err, 0) end
  if tpl.kind ~= "listwise" then
    error(("template %q is a %s template; openai_listwise takes listwise templates"):format(tpl.name, tpl.kind), 0)
  end
  state.tpl = tpl
  local n = #req.documents
  local m = math.min(n, opt(model, "candidates", 100))
  local order = {}
  for i = 1, m do order[i] = i end
  state.order, state.m = order, m
  local windows = {}
  if m >= 2 then windows = llm_parse.windows(m, opt(model, "window", 20), opt(model, "step", 10)) end
  state.windows, state.w, state.attempts = windows, 1, 0
  state.usage, state.repairs, state.ok, state.failed, state.unparsed = {}, 0, 0, 0, 0
  state.topts = { instruction = llm.instruction(model, req), max_words = opt(model, "max_words") }
  local f = {}
  for k, v in pairs(tpl.request or {}) do f[k] = v end
  if opt(model, "temperature") ~= nil then f.temperature = opt(model, "temperature") end
  if opt(model, "max_tokens") ~= nil then f.max_tokens = opt(model, "max_tokens") end
  state.fields = f
end

function P.plan(model, req, state)
  if not state.windows then setup(model, req, state) end
  local win = state.windows[state.w]
  if not win then return nil end
  local first, last = win[1], win[2]
  local window = {}
  for pos = first, last do
    local i = state.order[pos]
    local d = req.documents[i]
    window[#window + 1] = { id = i - 1, index = i - 1, text = llm.doc_text(req, d), title = d.title }
  end
  state.attempts = state.attempts + 1
  state.window = window
  return { llm.chat_spec(model, P, req, state.tpl.messages(req.query, window, state.topts), state.fields) }
end

local function next_window(state)
  state.w, state.attempts, state.window = state.w + 1, 0, nil
end

function P.absorb(model, _, state, _, responses)
  local win = state.windows[state.w]
  local first, last = win[1], win[2]
  local n = last - first + 1
  local status, out, usage, retryable = llm.outcome(model, state.tpl, responses[1], { window = state.window, n = n })
  llm.add_usage(state.usage, usage)
  if status == "failed" then
    if retryable and state.attempts <= opt(model, "call_retries", 0) then return end -- same window again
    state.failed = state.failed + 1
    state.first_error = state.first_error or out
    state.degraded = true
  elseif status == "unparseable" or (type(out) == "table" and out.unread) then
    -- no permutation in the answer: the window keeps its order
    state.unparsed = state.unparsed + 1
    state.repairs = state.repairs + n
    state.degraded = true
  else
    -- the template's permutation, repaired again in case a custom template left holes
    local perm, fixed = llm_parse.repair_permutation(type(out) == "table" and out.permutation or nil, n)
    state.repairs = state.repairs + (type(out) == "table" and tonumber(out.repairs) or 0) + fixed
    state.ok = state.ok + 1
    local slice = {}
    for k = 1, n do slice[k] = state.order[first + k - 1] end
    for k, x in ipairs(perm) do state.order[first + k - 1] = slice[x] end
  end
  next_window(state)
  if state.w > #state.windows and state.ok == 0 and state.unparsed == 0 and state.failed > 0 then
    state.error = state.first_error
  end
end

function P.combine(_, req, state)
  local n = #req.documents
  local scores, rank = {}, 0
  local order = state.order or {}
  for _, i in ipairs(order) do
    scores[i] = (n - rank) / n -- 1 - (r - 1) / n for final rank r = rank + 1
    rank = rank + 1
  end
  for i = (state.m or 0) + 1, n do
    scores[i] = (n - rank) / n
    rank = rank + 1
  end
  return llm.combined(state, scores, "rank")
end

return P
