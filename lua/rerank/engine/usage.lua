-- Usage accounting: token sums across upstream calls and cost from a model's `price`.
--
--   usage.add(total, u)              -> total    sums the numeric fields of u into total
--   usage.cost(price, u, extra)      -> USD number | nil (nil when price sets nothing)
--   usage.check_price(price, suggest) -> true | nil, key, suggestion  (the first unknown key;
--                                       suggest(word, candidates) -> a did-you-mean or nil)
--   usage.PRICE_KEYS                 the keys a model's `price` accepts (below)
--
-- Price keys (all USD, any subset; the terms add up):
--   per_1k_prompt_tokens, per_1m_prompt_tokens          x usage.prompt_tokens
--   per_1k_completion_tokens, per_1m_completion_tokens  x usage.completion_tokens
--   per_1k_tokens, per_1m_tokens                        x usage.total_tokens
--                                                         (else prompt + completion)
--   per_search_unit                                     x usage.search_units (else one unit
--                                                         per 100 documents, Cohere's rule)
--   per_document                                        x extra.documents
--   per_request                                         once per rerank request
-- u: { prompt_tokens, completion_tokens, total_tokens, search_units }; extra: { documents }.
-- The cost is rounded to 12 significant digits (no 0.30000000000000004).
local M = {}

M.PRICE_KEYS = {
  "per_1k_prompt_tokens", "per_1m_prompt_tokens",
  "per_1k_completion_tokens", "per_1m_completion_tokens",
  "per_1k_tokens", "per_1m_tokens",
  "per_search_unit", "per_document", "per_request",
}
local KNOWN = {}
for _, k in ipairs(M.PRICE_KEYS) do KNOWN[k] = true end

local function num(v)
  if type(v) == "number" and v == v and v > -math.huge and v < math.huge then return v end
  return nil
end

function M.add(total, u)
  if type(u) ~= "table" then return total end
  for k, v in pairs(u) do
    if num(v) then total[k] = (total[k] or 0) + v end
  end
  return total
end

function M.check_price(price, suggest)
  if type(price) ~= "table" then return true end
  local keys = {}
  for k in pairs(price) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not KNOWN[k] then return nil, k, suggest and suggest(k, M.PRICE_KEYS) or nil end
  end
  return true
end

-- price[key] * qty / per when the price sets key (no closure: the JIT compiles this path)
local function term(price, key, qty, per)
  local p = num(price[key])
  if p then return p * qty / (per or 1), true end
  return 0, false
end

local TERMS = { -- key, quantity (a field of the counts below), per
  { "per_1k_prompt_tokens", "prompt", 1e3 }, { "per_1m_prompt_tokens", "prompt", 1e6 },
  { "per_1k_completion_tokens", "completion", 1e3 }, { "per_1m_completion_tokens", "completion", 1e6 },
  { "per_1k_tokens", "total", 1e3 }, { "per_1m_tokens", "total", 1e6 },
  { "per_search_unit", "units", 1 }, { "per_document", "documents", 1 }, { "per_request", "request", 1 },
}

function M.cost(price, u, extra)
  if type(price) ~= "table" or next(price) == nil then return nil end
  u = type(u) == "table" and u or {}
  extra = type(extra) == "table" and extra or {}
  local prompt = num(u.prompt_tokens) or 0
  local completion = num(u.completion_tokens) or 0
  local units = num(u.search_units)
  if not units and num(extra.documents) then units = math.ceil(extra.documents / 100) end
  local qty = { prompt = prompt, completion = completion, total = num(u.total_tokens) or (prompt + completion),
                units = units or 0, documents = num(extra.documents) or 0, request = 1 }
  local cost, any = 0, false
  for i = 1, #TERMS do
    local t = TERMS[i]
    local c, set = term(price, t[1], qty[t[2]], t[3])
    cost, any = cost + c, any or set
  end
  if not any then return nil end
  return tonumber(("%.12g"):format(cost))
end

return M
