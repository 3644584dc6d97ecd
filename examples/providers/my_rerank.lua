-- A complete custom HTTP provider (DESIGN §4). In config.yaml:
--   - name: mine
--     provider_file: ./examples/providers/my_rerank.lua
--     base_url: https://rerank.example.com      # overrides defaults.base_url
--     api_key: ${MY_RERANK_KEY}
--     sigmoid: true                             # an option this file declares
-- Its upstream takes POST /score {"q", "passages", "k"} and answers
-- {"scores": [{"i": 0-based index, "s": raw score}], "tokens": N}.
local U = require "rerank.provider_util" -- shared helpers: keys, extra_body, JSON

return {
  name = "my_rerank",
  env_key = "MY_RERANK_KEY",                                -- used when api_key is unset
  defaults = { base_url = "http://127.0.0.1:9000", path = "/score" },
  limits = { max_documents = 100 },                         -- the runtime splits above this
  options = { sigmoid = "boolean" },                        -- extra keys a model may set

  -- Pure: describe the call. A table body is JSON-encoded by the runtime, which does the I/O.
  build = function(model, req)
    local passages = {}
    for i, doc in ipairs(req.documents) do passages[i] = doc.text end
    return { method = "POST", url = model.base_url .. model.path, headers = U.bearer(model, "MY_RERANK_KEY"),
             body = U.merge({ q = req.query, passages = passages, k = req.top_n }, model.extra_body, req.extra_body) }
  end,

  -- Pure: turn the answer into { results = {{index, score}}, usage }. HTTP >= 400 never
  -- gets here (the runtime reports it); return nil, "why" for an answer you cannot use.
  parse = function(model, _, _, _, body)
    local j = U.decode(body)                                 -- nil on bad JSON, never raises
    if type(j) ~= "table" or type(j.scores) ~= "table" then return nil, "no scores in the answer" end
    local results = {}
    for _, r in ipairs(j.scores) do
      local s = tonumber(r.s)
      if model.options.sigmoid and s then s = 1 / (1 + math.exp(-s)) end
      results[#results + 1] = { index = tonumber(r.i), score = s } -- no sorting: the runtime does it
    end
    return { results = results, usage = { prompt_tokens = tonumber(j.tokens), total_tokens = tonumber(j.tokens) } }
  end,
}
