-- RankGPT listwise prompt (reference/provider-apis.md §18, sunnweiwei/RankGPT rank_gpt.py):
-- the passages of one window as [1]..[num] turns, answer a permutation "[2] > [1] > [3]".
-- Each passage loses "Title: Content: ", is stripped and cut to its first 300
-- whitespace-separated words (opts.max_words). An instruction, when given, is appended to
-- the system prompt on its own line.
-- Parsing is RankGPT's receive_permutation: numbers in order ("[k]" ones only when the
-- answer has any), minus 1, duplicates and out-of-window ids dropped, missing ids appended
-- in their prior order; each dropped or appended id counts as a repair.
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"

local SYSTEM = "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."

local T = {
  name = "rankgpt",
  kind = "listwise",
  system = SYSTEM,
  max_words = 300,
  request = { temperature = 0 },
}

local function prefix(query, num)
  return "I will provide you with " .. num .. " passages, each indicated by number identifier []. \n"
    .. "Rank the passages based on their relevance to query: " .. query .. "."
end

local function post(query, num)
  return "Search Query: " .. query .. ". \nRank the " .. num .. " passages above based on their relevance "
    .. "to the search query. The passages should be listed in descending order using identifiers. "
    .. "The most relevant passages should be listed first. The output format should be [] > [], "
    .. "e.g., [1] > [2]. Only response the ranking results, do not say any word or explain."
end

-- window: { { id =, text = }, ... } in the current order
function T.messages(query, window, opts)
  opts = opts or {}
  local num = #window
  local system = SYSTEM
  if opts.instruction then system = system .. "\n" .. opts.instruction end
  local msgs = {
    { role = "system", content = system },
    { role = "user", content = prefix(query, num) },
    { role = "assistant", content = "Okay, please provide the passages." },
  }
  for rank, d in ipairs(window) do
    local content = (d.text or ""):gsub("Title: Content: ", "")
    content = llm.words(content, opts.max_words or T.max_words)
    msgs[#msgs + 1] = { role = "user", content = "[" .. rank .. "] " .. content }
    msgs[#msgs + 1] = { role = "assistant", content = "Received passage [" .. rank .. "]." }
  end
  msgs[#msgs + 1] = { role = "user", content = post(query, num) }
  return msgs
end

-- does the answer name any id in 1..n (the same reading as llm_parse.parse_permutation)?
local function any_id(text, n)
  if type(text) ~= "string" then return false end
  local bracketed = false
  for x in text:gmatch("%[%s*(%d+)%s*%]") do
    bracketed = true
    x = tonumber(x)
    if x >= 1 and x <= n then return true end
  end
  if bracketed then return false end
  for x in text:gmatch("%d+") do
    x = tonumber(x)
    if x >= 1 and x <= n then return true end
  end
  return false
end

-- ctx.n: the window size. Returns { permutation = {1-based window positions}, repairs = n,
-- unread = true when the answer held no usable id at all (the prior order, degraded) }.
function T.parse(text, ctx)
  local perm, repairs = llm_parse.parse_permutation(text, ctx.n)
  return { permutation = perm, repairs = repairs, unread = (ctx.n > 0 and not any_id(text, ctx.n)) or nil }
end

return T
